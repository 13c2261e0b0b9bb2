"""The built-in *Agent Hygiene Agent*: deterministic, no language model.

For the active agents of the run's workspace it finds credentials expired or ending soon (``ExpiringWithinDays``,
default 30), agents still on a client secret (an active secret and no key or federated credential: R28),
permissions held but not used for 30 days (the access reviews' definition of a permission's use, R32), agents with
no or a single accepted sponsor (R30: a named sponsor who has not accepted does not count; docs/sponsorship.md),
agents unused for 60 days and orphaned agents, each with a level and a suggested action, ranked by risk.

``execute`` reads the agents through the portal API with the run's token (``/api/v1/agent-facts/``), so it sees
only what the agent's permissions open; ``findings_from_facts`` is the pure rule set over those API-shaped dicts.
``apply`` carries out a finding's action through the normal services, as the person who applies it: those
services check that person's permission and write the audit events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents import policy as agent_policy
from agents import registry
from agents.choices import SponsorshipState
from agents.models import Agent, Sponsorship
from governance.access import services as access_packages
from governance.access.models import Assignment
from governance.conditional_access.choices import RiskLevel
from governance.conditional_access.services import RISK_ORDER
from governance.runs.builtin import Applied, Output, count_by_level
from governance.runs.builtin import facts as agent_facts
from governance.runs.builtin.facts import parse_iso
from portal import timefmt
from portal.models import User

EXPIRING_DAYS = 30
UNUSED_PERMISSION_DAYS = agent_facts.USAGE_DAYS
UNUSED_AGENT_DAYS = 60
INPUT_EXPIRING = "ExpiringWithinDays"
ACTIONS = ("rotate", "remove_grant", "add_sponsor", "retire", "review", "add_federated_credential")
#: Actions a person carries out on a page of the portal (the run page links there) rather than with Apply.
LINK_ACTIONS = {"add_federated_credential": "agent-federated-credential-add"}
NEEDS = {agent_facts.CREDENTIALS: "credentials", agent_facts.PERMISSIONS: "permissions",
         agent_facts.USAGE: "sign-in activity"}


@dataclass(frozen=True)
class Finding:
    agent_id: int
    agent: str
    kind: str
    level: str
    detail: str
    action: str  # one of ACTIONS; "review" has nothing to apply
    permission: str = ""
    assignment_id: int | None = None
    credential: str = ""  # the secret's prefix

    def as_dict(self) -> dict:
        return {**asdict(self), "level": str(self.level)}


def expiring_days(inputs: dict | None) -> int:
    """The ``ExpiringWithinDays`` input: a whole number of days from 1 to 365, 30 when not given."""
    value = (inputs or {}).get(INPUT_EXPIRING)
    if value is None or (isinstance(value, str) and not value.strip()):
        return EXPIRING_DAYS
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    if number is None or not 1 <= number <= 365:
        raise ValueError(f"{INPUT_EXPIRING} must be a whole number of days from 1 to 365 (got {value!r}).")
    return number


def findings_from_facts(facts: list[dict], now: datetime, *, expiring_within_days: int = EXPIRING_DAYS) \
        -> list[Finding]:
    """The hygiene findings for these agent facts (``/api/v1/agent-facts/`` items), highest risk first, then by
    agent, kind and detail. A check whose section is missing from the facts (the token lacks its scope) is
    skipped."""
    found: list[Finding] = []
    for item in facts:
        found += _credential_findings(item, now, expiring_within_days)
        found += _sponsor_findings(item)
        found += _usage_findings(item, now)
    return sorted(found, key=lambda f: (-RISK_ORDER[f.level], f.agent, f.kind, f.detail))


def _credential_findings(item: dict, now: datetime, days: int) -> list[Finding]:
    found = _secret_only_findings(item, now)
    for credential in item.get(agent_facts.CREDENTIALS, []):
        if credential.get("replaced"):
            continue  # already rotated: the newer secret is the one that matters
        expires_at = parse_iso(credential["expires_at"])
        if expires_at <= now:
            found.append(Finding(item["id"], item["name"], "credential_expired", RiskLevel.MEDIUM,
                                 f"secret {credential['prefix']}… expired on {expires_at:%Y-%m-%d}", "rotate",
                                 credential=credential["prefix"]))
        elif expires_at <= now + timedelta(days=days):
            found.append(Finding(item["id"], item["name"], "credential_expiring", RiskLevel.LOW,
                                 f"secret {credential['prefix']}… expires on {expires_at:%Y-%m-%d}", "rotate",
                                 credential=credential["prefix"]))
    return found


def _secret_only_findings(item: dict, now: datetime) -> list[Finding]:
    """An agent whose only way to authenticate is a client secret (R28): an active secret, no active key and no
    federated credential of its own or from its blueprint. The fix is a federated credential (or a key), after which
    the secret can be revoked."""
    secrets = [c for c in item.get(agent_facts.CREDENTIALS, []) if parse_iso(c["expires_at"]) > now]
    if not secrets or item.get(agent_facts.KEY_CREDENTIALS) or item.get(agent_facts.FEDERATED_CREDENTIALS):
        return []
    return [Finding(item["id"], item["name"], "secret_only", RiskLevel.LOW,
                    f"authenticates only with a client secret ({_count(secrets, 'active secret')}): add a federated "
                    f"credential (or a key) so it keeps no secret, then revoke the secret",
                    "add_federated_credential")]


def _sponsor_findings(item: dict) -> list[Finding]:
    orphaned_at = parse_iso(item["orphaned_at"])
    if orphaned_at is not None:
        return [Finding(item["id"], item["name"], "orphaned", RiskLevel.HIGH,
                        f"no active sponsor since {orphaned_at:%Y-%m-%d}", "add_sponsor")]
    # Accepted sponsors (the facts' count; docs/sponsorship.md): a named sponsor who has not accepted is no sponsor.
    if item["sponsors"] == 0:
        return [Finding(item["id"], item["name"], "no_sponsor", RiskLevel.MEDIUM,
                        "no sponsor has accepted: nobody is accountable for it", "add_sponsor")]
    if item["sponsors"] == 1:
        return [Finding(item["id"], item["name"], "single_sponsor", RiskLevel.LOW,
                        "one sponsor has accepted: nobody is accountable if they leave", "add_sponsor")]
    return []


def _usage_findings(item: dict, now: datetime) -> list[Finding]:
    usage = item.get(agent_facts.USAGE)
    if usage is None:
        return []
    last = parse_iso(usage["last_used"])
    unused_since = now - timedelta(days=UNUSED_AGENT_DAYS)
    if (last or parse_iso(item["created_at"])) <= unused_since:
        # The same instant, with its zone, as the registry's "Last used" and the review's evidence (governance.usage).
        when = f"since {timefmt.when(last)}" if last else "ever"
        # An unused agent's permissions are all unused: this one finding says it.
        return [Finding(item["id"], item["name"], "agent_unused", RiskLevel.MEDIUM,
                        f"no token {when} (over {UNUSED_AGENT_DAYS} days)", "retire")]
    permissions = item.get(agent_facts.PERMISSIONS)
    if permissions is None:
        return []
    # The reviews' definition of a permission's use (governance.usage.selectors.permission_last_use; docs/design.md,
    # R32): introspected, used at the portal API or asked for in a run, not merely granted in a token.
    used = set(usage.get("permissions_used_30d", []))
    automatic = {p["name"] for p in permissions if p["source"] == "blueprint"}
    by_assignment: dict[int, list[str]] = {}
    for p in permissions:
        if p["assignment_id"] is not None:
            by_assignment.setdefault(p["assignment_id"], []).append(p["name"])
    unused = {p["name"] for p in permissions} - used
    found = []
    idle_automatic = sorted(unused & automatic)
    if idle_automatic:  # one finding per agent: they stand or fall together with the blueprint
        found.append(Finding(item["id"], item["name"], "permission_unused", RiskLevel.LOW,
                             f"{_count(idle_automatic, 'automatic permission')} unused in {UNUSED_PERMISSION_DAYS} "
                             f"days ({', '.join(idle_automatic)}); a blueprint's permissions cannot be removed: "
                             f"review whether the agent still needs to exist", "review",
                             permission=", ".join(idle_automatic)))
    for assignment_id, names in sorted(by_assignment.items()):
        idle = sorted(set(names) & unused - automatic)
        if not idle:
            continue
        others = sorted(set(names) - set(idle))
        also = f" (ending it also removes {', '.join(others)}, in use)" if others else ""
        found.append(Finding(item["id"], item["name"], "permission_unused", RiskLevel.LOW,
                             f"{', '.join(idle)} unused in {UNUSED_PERMISSION_DAYS} days; from access package "
                             f"assignment #{assignment_id}{also}", "remove_grant", permission=", ".join(idle),
                             assignment_id=assignment_id))
    return found


def _count(names: list, noun: str) -> str:
    return f"{len(names)} {noun}{'' if len(names) == 1 else 's'}"


def findings(agents, now: datetime | None = None, *, expiring_within_days: int = EXPIRING_DAYS) -> list[Finding]:
    """The hygiene findings for these agents (a queryset) read straight from the database (a fixed number of
    queries): the same rules as a run, without the API."""
    now = now or timezone.now()
    return findings_from_facts(agent_facts.facts(agents, sections=agent_facts.ALL_SECTIONS, now=now), now,
                               expiring_within_days=expiring_within_days)


# --- the built-in agent ---------------------------------------------------------------------------------------------
def execute(client, run) -> Output:
    """One run: read the workspace's agent facts through the API with the run's token, return the findings."""
    days = expiring_days(run.inputs)
    workspace = run.agent.workspace.slug
    items = client.get_all("/api/v1/agent-facts/", {"workspace": workspace})
    now = timezone.now()
    found = findings_from_facts(items, now, expiring_within_days=days)
    summary = (f"Checked {len(items)} active agent{'s' if len(items) != 1 else ''} in {workspace} "
               f"(credentials ending within {days} days): {len(found)} finding{'s' if len(found) != 1 else ''} "
               f"({count_by_level(found)}).")
    missing = [label for section, label in NEEDS.items() if items and section not in items[0]]
    if missing:
        summary += f" Not checked, the run's token does not open them: {', '.join(missing)}."
    return Output(summary=summary, findings=[f.as_dict() for f in found])


def _agent_of(run, finding: dict) -> Agent:
    """The finding's agent, read afresh; it must belong to the run's workspace."""
    agent = Agent.objects.select_related("workspace").filter(pk=finding.get("agent_id")).first()
    if agent is None or agent.workspace_id != run.agent.workspace_id:
        raise PermissionDenied("This finding's agent is not in the workspace this run checked.")
    return agent


def apply(actor, run, finding: dict, params: dict) -> Applied:
    """Carry out a finding's suggested action as ``actor`` through the registry and access-package services (they
    check the actor's permission and write the audit events). A new secret is returned once, in ``Applied.secret``.
    """
    action = finding.get("action")
    agent = _agent_of(run, finding)
    if action == "rotate":
        credential, secret = registry.credential_rotate(actor=actor, agent=agent)
        return Applied(f"Issued a new secret {credential.prefix}… for {agent.name}, valid until "
                       f"{credential.expires_at:%Y-%m-%d}; the old one stays valid for a short overlap. Copy the "
                       f"secret now: it is shown once.", secret=secret)
    if action == "remove_grant":
        assignment = Assignment.objects.filter(pk=finding.get("assignment_id"), agent=agent).first()
        if assignment is None:
            raise ValidationError("That access package assignment is not this agent's.")
        access_packages.assignment_revoke(actor=actor, assignment=assignment,
                                          reason=f"unused permission {finding.get('permission', '')} "
                                                 f"(Agent Hygiene Agent, run #{run.pk})".strip())
        return Applied(f"Ended {agent.name}'s assignment of {assignment.package.name} (#{assignment.pk}).")
    if action == "add_sponsor":
        user = (params or {}).get("user")
        if not isinstance(user, User):
            raise ValidationError("Choose the person who will sponsor the agent.")
        registry.agent_person_add(actor=actor, agent=agent, user=user, role=agent_policy.SPONSOR_AGENT)
        if agent.orphaned_at is not None:  # R7: it has an active sponsor again
            registry.agent_set_orphaned(actor=actor, agent=agent, orphaned=False)
        if Sponsorship.objects.filter(agent=agent, user=user, state=SponsorshipState.PENDING).exists():
            # R30 (docs/sponsorship.md): someone else named is asked, and sponsors once they accept.
            return Applied(f"{user.username} is asked to sponsor {agent.name}; they sponsor it once they accept.")
        return Applied(f"{user.username} now sponsors {agent.name}.")
    if action == "retire":
        counts = registry.agent_retire(actor=actor, agent=agent)
        return Applied(f"Retired {agent.name}: {counts.get('credentials_revoked', 0)} credentials revoked, "
                       f"{counts.get('grants_ended', 0)} permissions ended.")
    if action in LINK_ACTIONS:
        raise ValidationError(f"Add a federated credential (or a key) on {agent.name}'s credentials page; there is "
                              f"nothing to apply here.")
    if action == "review":
        raise ValidationError("This finding has no automatic action: the blueprint's automatic permissions cannot "
                              "be removed. Review the agent, and retire it if it is no longer needed.")
    raise ValidationError(f"Unknown action {action!r}.")
