"""Agent setup and lifecycle services (R1–R10): one path for one agent and for ten thousand.

``agents_provision`` validates a batch of ``AgentSpec``s completely before writing anything (all-or-nothing,
errors name their row and field), then writes each table with batched inserts. ``agent_create`` is the same
path with one spec, so the wizard, the API, bulk upload and ``provision_agents`` share every rule.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX, UNUSABLE_PASSWORD_SUFFIX_LENGTH
from django.contrib.auth.models import Permission as AuthPermission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents import attributes, credentials, policy, signals, sponsorship, trust
from agents.choices import AgentKind, AgentScope, AgentStatus, DisabledBy, GrantSource, IdentityType
from agents.models import (
    Agent,
    AgentIdentity,
    AgentUser,
    AgentUserObjectPermission,
    AttributeValue,
    Blueprint,
    Credential,
    PermissionGrant,
)
from portal import audit, bulkrows
from portal.choices import UserKind
from portal.models import User, Workspace

CREDENTIAL_LIFETIME = timedelta(days=settings.CREDENTIAL_LIFETIME_DAYS)
ROTATION_OVERLAP = timedelta(hours=settings.CREDENTIAL_ROTATION_OVERLAP_HOURS)
ATTRIBUTE_KEY_RE = attributes.ATTRIBUTE_KEY_RE
NAME_RE = re.compile(r"^[\w .@+-]{1,150}$")
BATCH = 2000


def detail_panels(user: User, agent: Agent) -> list[dict]:
    return [panel for panels in signals.answers(signals.detail_panels, user=user, agent=agent) for panel in panels]


def extra_grants(agent: Agent) -> list[dict]:
    return [row for rows in signals.answers(signals.extra_grants, agent=agent) for row in rows]


def setup_notices(blueprint: Blueprint) -> list[str]:
    return signals.answers(signals.setup_notices, blueprint=blueprint)


def status_notes(agent: Agent) -> list[tuple[str, str]]:
    return signals.answers(signals.status_notes, agent=agent)


def activation_problems(agent: Agent, blueprint: Blueprint) -> list[str]:
    return signals.answers(signals.activation_problems, agent=agent, blueprint=blueprint)


@dataclass
class AgentSpec:
    """Everything a new agent needs; ``row`` numbers bulk-file errors (1 = first data row)."""

    blueprint: Blueprint
    name: str
    identity_type: str
    scope: str
    sponsors: Sequence[User]
    owners: Sequence[User]
    run_as_user: User | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    with_agent_user: bool = True
    justification: str = ""
    row: int | None = None
    kind: str = ""  # empty: from the blueprint's triggers; OAuth clients are client applications (R27)


@dataclass
class Provisioned:
    agent: Agent
    client_id: str = ""
    client_secret: str = ""  # shown once, never stored


class ProvisioningError(ValidationError):
    """All problems of a batch, each as (row, column, message); nothing was written."""

    def __init__(self, problems: list[tuple[int | None, str, str]]):
        self.problems = problems
        super().__init__([self.describe(p) for p in problems])

    @staticmethod
    def describe(problem: tuple[int | None, str, str]) -> str:
        row, column, message = problem
        where = f"Row {row}, column {column}: " if row is not None else (f"{column}: " if column else "")
        return where + message


def _human_problems(users: Sequence[User], column: str) -> list[str]:
    problems = []
    for user in users:
        if user.kind != UserKind.HUMAN:
            problems.append(f"{user.username} is an agent user; {column} must be people")
        elif not user.is_active:
            problems.append(f"{user.username} is deactivated")
    return problems


def spec_problems(actor: User | None, workspace: Workspace, spec: AgentSpec, *, now: datetime,
                  taken_names: set[str], blueprint_permissions: list,
                  refused_attributes: dict[str, attributes.Protection] | None = None) -> list[tuple[str, str]]:
    """Every rule a new agent must meet, as (column, message) pairs; empty when the spec is valid.

    ``refused_attributes`` are the protected keys the actor may not assign (R20), looked up once per batch."""
    problems: list[tuple[str, str]] = []
    blueprint = spec.blueprint
    if actor is not None and not policy.can_create_agent(actor, workspace, spec.scope):
        problems.append(("scope", "contributors set up agents at user scope only"
                         if spec.scope == AgentScope.WORKSPACE else "you may not set up agents in this workspace"))
    if spec.scope not in AgentScope.values:
        problems.append(("scope", f"'{spec.scope}' is not workspace or user"))
    if not NAME_RE.match(spec.name or ""):
        problems.append(("name", "a name of 1–150 letters, digits, spaces or . @ + - _ is required"))
    elif spec.name.lower() in taken_names:
        problems.append(("name", f"an agent called '{spec.name}' already exists in {workspace.name}"))
    if not blueprint.is_complete:
        problems.append(("blueprint", f"{blueprint} has skills the catalog does not know; an owner must map them"))
    privileged = [p.name for p in blueprint_permissions if p.privileged]
    if privileged:
        problems.append(("blueprint", f"it requires privileged permissions that can never reach an agent: "
                                      f"{', '.join(sorted(privileged))}"))
    if spec.kind == AgentKind.CLIENT_APPLICATION and blueprint_permissions:
        problems.append(("blueprint", "a client application holds no permissions of its own (R27)"))
    if spec.identity_type == IdentityType.AGENT_IDENTITY:
        # An OAuth client application's identity carries no permission (checked above), so R2's guard on who
        # gets a dedicated identity does not concern it (docs/oauth.md, "Client registration").
        if (blueprint.publisher_kind not in settings.AGENT_IDENTITY_PUBLISHER_KINDS
                and spec.kind != AgentKind.CLIENT_APPLICATION):
            problems.append(("identity_type", f"agent identities are offered only for blueprints published by "
                                              f"{', '.join(settings.AGENT_IDENTITY_PUBLISHER_KINDS)}; "
                                              f"run it as an existing user account"))
        if spec.run_as_user is not None:
            problems.append(("identity_type", "an agent identity does not run as a user account"))
    elif spec.identity_type == IdentityType.USER_ACCOUNT:
        if spec.run_as_user is None:
            problems.append(("identity_type", "name the user account the agent runs as"))
        else:
            problems += [("identity_type", p) for p in _human_problems([spec.run_as_user], "the run-as account")]
    else:
        problems.append(("identity_type", f"'{spec.identity_type}' is not agent_identity or user_account"))
    if not spec.sponsors:
        problems.append(("sponsors", "at least one active sponsor is required"))
    problems += [("sponsors", p) for p in _human_problems(spec.sponsors, "sponsors")]
    if not spec.owners:
        problems.append(("owners", "at least one owner is required"))
    problems += [("owners", p) for p in _human_problems(spec.owners, "owners")]
    for key, value in (spec.attributes or {}).items():
        if not ATTRIBUTE_KEY_RE.match(key):
            problems.append(("attributes", f"'{key}' is not a valid attribute name"))
        if len(str(value)) > 256:
            problems.append(("attributes", f"the value of '{key}' is longer than 256 characters"))
        if refused_attributes and key in refused_attributes:
            problems.append(("attributes", attributes.refusal_message([refused_attributes[key]])))
    if spec.expires_at is not None:
        if timezone.is_naive(spec.expires_at):
            problems.append(("expires_at", "give a time zone (e.g. 2027-01-31T00:00:00Z)"))
        elif spec.expires_at <= now:
            problems.append(("expires_at", "the expiry must be in the future"))
    return problems


def poll_period(blueprint: Blueprint) -> int:
    """The schedule a blueprint's triggers give its agents: the shortest ``DefaultPollPeriodSeconds`` above 0, or
    0 (on demand only)."""
    periods = [t.get("DefaultPollPeriodSeconds") or 0 for t in blueprint.triggers or []]
    positive = [p for p in periods if isinstance(p, int) and p > 0]
    return min(positive) if positive else 0


def _first_status(blueprint: Blueprint, workspace: Workspace) -> str:
    statuses = signals.answers(signals.initial_status, blueprint=blueprint, workspace=workspace)
    return statuses[0] if statuses else AgentStatus.ACTIVE


def _snapshot(agent: Agent, spec: AgentSpec, permission_names: list[str]) -> dict:
    return {
        "name": agent.name, "blueprint": f"{spec.blueprint.name}@{spec.blueprint.version}", "scope": agent.scope,
        "identity_type": agent.identity_type, "run_as_user": spec.run_as_user.username if spec.run_as_user else None,
        "status": agent.status, "sponsors": sorted(u.username for u in spec.sponsors),
        "owners": sorted(u.username for u in spec.owners), "attributes": dict(spec.attributes or {}),
        "expires_at": agent.expires_at, "permissions": permission_names,
    }


@transaction.atomic
def agents_provision(*, actor: User | None, workspace: Workspace, specs: Sequence[AgentSpec],
                     dry_run: bool = False, progress: Callable[[int], None] | None = None) -> list[Provisioned]:
    """Create agents all-or-nothing with their identities, fixed permissions (R3), agent users (R6),
    credentials, sponsors and owners (R7), attributes and expiry (R8), one audit event each (R23)."""
    now = timezone.now()
    taken = {n.lower() for n in Agent.objects.filter(workspace=workspace).values_list("name", flat=True)}
    permissions_of = {bp.pk: list(bp.required_permissions.all())
                      for bp in {s.blueprint.pk: s.blueprint for s in specs}.values()}
    problems: list[tuple[int | None, str, str]] = []
    refused = {p.key: p for p in attributes.refused_keys(actor, {k for s in specs for k in (s.attributes or {})})}
    for index, spec in enumerate(specs):
        row = spec.row if spec.row is not None else (index + 1 if len(specs) > 1 else None)
        found = spec_problems(actor, workspace, spec, now=now, taken_names=taken,
                              blueprint_permissions=permissions_of[spec.blueprint.pk], refused_attributes=refused)
        problems += [(row, column, message) for column, message in found]
        taken.add((spec.name or "").lower())
    if problems:
        raise ProvisioningError(problems)
    if dry_run or not specs:
        return []
    by_codename = {p.codename: p for p in AuthPermission.objects.filter(
        content_type__app_label="agents", codename__in=(policy.OWN_AGENT, policy.SPONSOR_AGENT))}  # one query
    own, sponsor = by_codename[policy.OWN_AGENT], by_codename[policy.SPONSOR_AGENT]
    # R28: a workspace that forbids new secrets sets its agents up without one (they add a key or a federated
    # credential); read afresh, the caller's workspace object may be older than the policy.
    issue_secrets = not Workspace.objects.filter(pk=workspace.pk, forbid_new_secrets=True).exists()
    # The same answer for every agent of a blueprint in this workspace: asked once per blueprint, not per row
    # (an answer may read the database, e.g. whether a partner blueprint's permission set is approved).
    blueprints = {s.blueprint.pk: s.blueprint for s in specs}.values()
    first_status = {bp.pk: _first_status(bp, workspace) for bp in blueprints}
    periods = {bp.pk: poll_period(bp) for bp in blueprints}
    results: list[Provisioned] = []
    done = 0
    for start in range(0, len(specs), BATCH):
        batch = specs[start:start + BATCH]
        agents = bulkrows.insert_objects([
            Agent(workspace=workspace, blueprint=s.blueprint, name=s.name.strip(), scope=s.scope,
                  kind=s.kind or s.blueprint.kind, identity_type=s.identity_type, run_as_user=s.run_as_user,
                  status=first_status[s.blueprint.pk], created_by=actor, created_at=now,
                  expires_at=s.expires_at, schedule_period_seconds=periods[s.blueprint.pk])
            for s in batch
        ])
        with_identity = [(a, s) for a, s in zip(agents, batch, strict=True)
                         if s.identity_type == IdentityType.AGENT_IDENTITY]
        # The rows below hang off the new agents and nothing reads them back as objects: they are written from
        # plain tuples (docs/design.md, "Bulk inserts without model instances").
        client_ids = [credentials.new_client_id() for _ in with_identity]
        identity_ids = bulkrows.insert_rows(AgentIdentity, ("agent_id", "client_id", "created_at"), [
            (a.pk, client_id, now) for (a, _), client_id in zip(with_identity, client_ids, strict=True)
        ], returning_pk=True)
        identities = [(identity_id, client_id, a, s) for identity_id, client_id, (a, s)
                      in zip(identity_ids, client_ids, with_identity, strict=True)]
        bulkrows.insert_rows(PermissionGrant, ("identity_id", "permission_id", "source", "granted_at"), [
            (identity_id, permission.pk, GrantSource.BLUEPRINT, now)
            for identity_id, _client_id, _agent, spec in identities for permission in permissions_of[spec.blueprint.pk]
        ])
        agent_user_pairs = [(identity_id, client_id, agent) for identity_id, client_id, agent, spec in identities
                            if spec.with_agent_user]
        user_ids = bulkrows.insert_rows(User, AGENT_USER_COLUMNS, [
            _agent_user_row(client_id, agent) for _identity_id, client_id, agent in agent_user_pairs
        ], returning_pk=True)
        bulkrows.insert_rows(AgentUser, ("identity_id", "user_id"), [
            (identity_id, user_id) for (identity_id, _client_id, _agent), user_id in zip(agent_user_pairs, user_ids,
                                                                                           strict=True)])
        secrets_by_identity = {identity_id: credentials.new_secret() for identity_id, *_ in identities
                               if issue_secrets}
        bulkrows.insert_rows(Credential, ("identity_id", "secret_hash", "prefix", "created_at", "created_by_id",
                                          "expires_at"), [
            (identity_id, credentials.hash_secret(secret), secret[:10], now, actor.pk if actor else None,
             now + CREDENTIAL_LIFETIME) for identity_id, secret in secrets_by_identity.items()
        ])
        bulkrows.insert_rows(AgentUserObjectPermission, ("permission_id", "user_id", "content_object_id"), [
            (own.pk, user_id, a.pk) for a, s in zip(agents, batch, strict=True)
            for user_id in dict.fromkeys(u.pk for u in s.owners)
        ] + [
            (sponsor.pk, user_id, a.pk) for a, s in zip(agents, batch, strict=True)
            for user_id in dict.fromkeys(u.pk for u in s.sponsors)
        ])
        # R30 (docs/sponsorship.md): each named sponsor is asked; one who names themself has accepted.
        sponsorship.sponsorships_open_for_new_agents(actor=actor, now=now, pairs=[
            (a, u) for a, s in zip(agents, batch, strict=True) for u in {u.pk: u for u in s.sponsors}.values()])
        bulkrows.insert_rows(AttributeValue, ("agent_id", "key", "value"), [
            (a.pk, k, str(v)) for a, s in zip(agents, batch, strict=True) for k, v in (s.attributes or {}).items()
        ])
        identity_of = {a.pk: (identity_id, client_id) for identity_id, client_id, a, _spec in identities}
        audit.record_many(actor=actor, instances=False, changes=[
            audit.Change("agent.create", a, workspace,
                         after=_snapshot(a, s, sorted(p.name for p in permissions_of[s.blueprint.pk])
                                         if s.identity_type == IdentityType.AGENT_IDENTITY else []))
            for a, s in zip(agents, batch, strict=True)
        ])
        signals.agent_created.send(sender=Agent, actor=actor, created=list(zip(agents, batch, strict=True)))
        for agent in agents:
            identity_id, client_id = identity_of.get(agent.pk, (None, ""))
            results.append(Provisioned(agent, client_id, secrets_by_identity.get(identity_id, "")))
        done += len(batch)
        if progress:
            progress(done)
    return results


#: the columns ``_agent_user_row`` gives; every other column of the user gets its default
AGENT_USER_COLUMNS = ("username", "display_name", "kind", "is_active", "password")


def _agent_user_row(client_id: str, agent: Agent) -> tuple:
    """The agent user's row (R6), in the order of ``AGENT_USER_COLUMNS``. An agent user never signs in
    interactively: an unusable password as ``set_unusable_password`` makes one ("!" and 40 random characters),
    from one call to the system's random source instead of 40."""
    return (f"agent-{client_id[:12]}", f"{agent.name} (agent user)", UserKind.AGENT_USER,
            agent.status == AgentStatus.ACTIVE,
            UNUSABLE_PASSWORD_PREFIX + secrets.token_hex(UNUSABLE_PASSWORD_SUFFIX_LENGTH // 2))


def agent_create(*, actor: User | None, workspace: Workspace, spec: AgentSpec) -> Provisioned:
    """Set up one agent: the same validation and writes as a bulk file of one row."""
    return agents_provision(actor=actor, workspace=workspace, specs=[spec])[0]


# --- lifecycle (R5, R6, R8) ------------------------------------------------------------------------------


def _lock(agent: Agent) -> Agent:
    return Agent.objects.select_for_update(of=("self",)).select_related("workspace", "run_as_user").get(pk=agent.pk)


def _set_agent_user_active(agent: Agent, active: bool) -> int:
    """R6: the agent user follows its agent's status."""
    return User.objects.filter(agent_user_of__identity__agent=agent).update(is_active=active)


@transaction.atomic
def agent_disable(*, actor: User | None, agent: Agent, reason: str = "") -> Agent:
    """Sponsors and owners disable an agent; its agent user is disabled with it."""
    agent = _lock(agent)
    if actor is not None and not policy.can_toggle_agent(actor, agent):
        raise PermissionDenied("Only the agent's sponsors and owners can disable it.")
    if agent.status == AgentStatus.RETIRED:
        raise ValidationError("A retired agent cannot be disabled or enabled.")
    if agent.status == AgentStatus.DISABLED:
        return agent
    before = {"status": agent.status}
    if actor is None:
        agent.disabled_by = DisabledBy.SYSTEM
    else:
        agent.disabled_by = DisabledBy.OWNER if policy.can_manage_agent(actor, agent) else DisabledBy.SPONSOR
    agent.status = AgentStatus.DISABLED
    agent.save(update_fields=["status", "disabled_by"])
    _set_agent_user_active(agent, False)
    signals.agent_disabled.send(sender=Agent, agent=agent)
    audit.record(actor=actor, action="agent.disable", target=agent, workspace=agent.workspace, before=before,
                 after={"status": agent.status, "disabled_by": agent.disabled_by, "reason": reason})
    return agent


@transaction.atomic
def agent_enable(*, actor: User | None, agent: Agent) -> Agent:
    """Re-enable a disabled agent. Only owners may re-enable one an owner (or the system) disabled."""
    agent = _lock(agent)
    if actor is not None:
        if not policy.can_toggle_agent(actor, agent):
            raise PermissionDenied("Only the agent's sponsors and owners can enable it.")
        if agent.disabled_by in (DisabledBy.OWNER, DisabledBy.SYSTEM) and not policy.can_manage_agent(actor, agent):
            raise PermissionDenied("An owner disabled this agent; only an owner can enable it again.")
    if agent.status != AgentStatus.DISABLED:
        raise ValidationError(f"Only a disabled agent can be enabled; this one is {agent.get_status_display()}.")
    if agent.is_expired():
        raise ValidationError("This agent has expired; extend its expiry before enabling it.")
    agent.status, agent.disabled_by = AgentStatus.ACTIVE, DisabledBy.NONE
    agent.save(update_fields=["status", "disabled_by"])
    _set_agent_user_active(agent, True)
    audit.record(actor=actor, action="agent.enable", target=agent, workspace=agent.workspace,
                 before={"status": AgentStatus.DISABLED}, after={"status": agent.status})
    return agent


@transaction.atomic
def agent_activate(*, actor: User | None, agent: Agent) -> Agent:
    """Complete the setup of a draft or pending agent (R16): its creator (a contributor at user scope) or an owner
    makes it active once every gate passes, e.g. a Global Administrator approved its permission set (R14)."""
    agent = _lock(agent)
    if actor is not None and not (policy.can_manage_agent(actor, agent) or agent.created_by_id == actor.pk):
        raise PermissionDenied("Only the agent's creator and owners complete its setup.")
    if agent.status not in (AgentStatus.DRAFT, AgentStatus.PENDING_APPROVAL):
        raise ValidationError(f"Only a draft or pending agent completes setup; this one is "
                              f"{agent.get_status_display().lower()}.")
    problems = activation_problems(agent, agent.blueprint)
    if problems:
        raise ValidationError(problems)
    before = {"status": agent.status}
    agent.status = AgentStatus.ACTIVE
    agent.save(update_fields=["status"])
    _set_agent_user_active(agent, True)
    audit.record(actor=actor, action="agent.activate", target=agent, workspace=agent.workspace, before=before,
                 after={"status": agent.status})
    return agent


@transaction.atomic
def agent_move_version(*, actor: User | None, agent: Agent, blueprint: Blueprint) -> Agent:
    """Move an agent to another version of its blueprint once every gate passes (R15: a changed partner permission
    set needs a new approval). Agent identities keep their fixed permissions (R3), so they do not move: set up a
    new agent from the new version instead."""
    agent = _lock(agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners change its blueprint version.")
    if blueprint.name != agent.blueprint.name:
        raise ValidationError("An agent moves only between versions of its own blueprint.")
    if agent.identity_type == IdentityType.AGENT_IDENTITY:
        raise ValidationError("An agent identity keeps the permissions it was created with; set up a new "
                              "agent from the new version instead.")
    if agent.status == AgentStatus.RETIRED:
        raise ValidationError("A retired agent does not change.")
    if not blueprint.is_complete:
        raise ValidationError(f"{blueprint} has skills the catalog does not know.")
    problems = activation_problems(agent, blueprint)
    if problems:
        raise ValidationError(problems)
    before = {"blueprint": str(agent.blueprint)}
    agent.blueprint = blueprint
    agent.save(update_fields=["blueprint"])
    audit.record(actor=actor, action="agent.move_version", target=agent, workspace=agent.workspace, before=before,
                 after={"blueprint": str(blueprint)})
    return agent


def blast_radius(user: User, agents: Sequence[Agent], action: str) -> dict | None:
    """What disabling or retiring ``agents`` stops, from the apps that hold it (docs/blast-radius.md), or None."""
    found = signals.answers(signals.blast_radius, user=user, agents=list(agents), action=action)
    return found[0] if found else None


def retirement_preview(agent: Agent) -> dict:
    """Exactly what retiring would end, for the confirmation page."""
    now = timezone.now()
    identity = AgentIdentity.objects.filter(agent=agent).first()
    creds = list(Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True, expires_at__gt=now))
    grants = list(PermissionGrant.objects.filter(identity__agent=agent, ended_at__isnull=True)
                  .select_related("permission"))
    agent_user = User.objects.filter(agent_user_of__identity__agent=agent).first()
    return {"identity": identity, "credentials": creds, "grants": grants, "agent_user": agent_user,
            **trust.retirement_preview(agent, now)}


@transaction.atomic
def agent_retire(*, actor: User | None, agent: Agent) -> dict:
    """R5: in one transaction revoke every credential (and token), end every grant and assignment, disable the
    agent user. Irreversible; the records are kept."""
    agent = _lock(agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners can retire it.")
    if agent.status == AgentStatus.RETIRED:
        raise ValidationError("This agent is already retired.")
    now = timezone.now()
    counts = {
        "credentials_revoked": Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True)
        .update(revoked_at=now),
        "grants_ended": PermissionGrant.objects.filter(identity__agent=agent)._end_for_retirement(now),
        "agent_users_disabled": _set_agent_user_active(agent, False),
        **trust.revoke_for_retirement(agent, now),
    }
    signals.agent_disabled.send(sender=Agent, agent=agent, retiring=True)
    for ended in signals.answers(signals.agent_retired, agent=agent, now=now):
        counts.update(ended)
    before = {"status": agent.status}
    agent.status, agent.retired_at = AgentStatus.RETIRED, now
    agent.save(update_fields=["status", "retired_at"])
    audit.record(actor=actor, action="agent.retire", target=agent, workspace=agent.workspace, before=before,
                 after={"status": agent.status, **counts})
    return counts


# --- credentials ----------------------------------------------------------------------------------------


@transaction.atomic
def credential_rotate(*, actor: User | None, agent: Agent, overlap: timedelta = ROTATION_OVERLAP,
                      lifetime: timedelta = CREDENTIAL_LIFETIME, secret: str | None = None) -> tuple[Credential, str]:
    """Issue a new secret; the current ones stay valid for ``overlap`` so callers can switch over.

    ``secret`` is for demo data only (a value derived from ``SECRET_KEY`` so ``seed_demo`` can print it on every
    run); everything else gets a fresh random one."""
    agent = _lock(agent)
    identity = trust.identity_for_management(actor, agent, register=True)
    if agent.workspace.forbid_new_secrets:  # R28 (docs/design.md, Credential types in governance); rolls back
        raise ValidationError(f"{agent.workspace.name} forbids new client secrets: add a key or a federated "
                              f"credential to {agent.name} instead.")
    now = timezone.now()
    secret = secret or credentials.new_secret()
    new = Credential.objects.create(identity=identity, secret_hash=credentials.hash_secret(secret),
                                    prefix=secret[:10], created_at=now, created_by=actor, expires_at=now + lifetime)
    cutoff = now + overlap
    shortened = 0
    for old in Credential.objects.filter(identity=identity, revoked_at__isnull=True, expires_at__gt=cutoff) \
            .exclude(pk=new.pk):
        old.expires_at, old.replaced_by = cutoff, new
        old.save(update_fields=["expires_at", "replaced_by"])
        shortened += 1
    audit.record(actor=actor, action="agent.credential_rotate", target=agent, workspace=agent.workspace,
                 after={"credential_id": new.pk, "prefix": new.prefix, "expires_at": new.expires_at,
                        "previous_valid_until": cutoff if shortened else None})
    return new, secret


@transaction.atomic
def credential_revoke(*, actor: User | None, credential: Credential) -> Credential:
    agent = _lock(credential.identity.agent)
    trust.identity_for_management(actor, agent)
    credential = Credential.objects.select_for_update().get(pk=credential.pk)
    if credential.revoked_at is not None:
        return credential
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["revoked_at"])
    audit.record(actor=actor, action="agent.credential_revoke", target=agent, workspace=agent.workspace,
                 after={"credential_id": credential.pk, "prefix": credential.prefix})
    signals.credential_revoked.send(sender=Credential, agent=agent, credential=credential)
    return credential


# --- owners and sponsors (R7) -------------------------------------------------------------------------------


def people_of(agent: Agent) -> dict[str, list[User]]:
    """The agent's owners and sponsors, in one query."""
    people: dict[str, list[User]] = {policy.OWN_AGENT: [], policy.SPONSOR_AGENT: []}
    rows = AgentUserObjectPermission.objects.filter(content_object=agent).select_related("user", "permission")
    for row in rows.order_by("user__username"):
        people[row.permission.codename].append(row.user)
    return people


@transaction.atomic
def agent_person_add(*, actor: User | None, agent: Agent, user: User, role: str, note: str = "") -> None:
    """Add an owner (``own_agent``) or a sponsor (``sponsor_agent``). A new sponsor is asked to accept unless
    they name themself (R30, docs/sponsorship.md); ``note`` adds a line to what they are told."""
    agent = _lock(agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners change its owners and sponsors.")
    if role not in (policy.OWN_AGENT, policy.SPONSOR_AGENT):
        raise ValidationError("Choose owner or sponsor.")
    problems = _human_problems([user], "owners and sponsors")
    if problems:
        raise ValidationError(problems)
    permission = AuthPermission.objects.get(content_type__app_label="agents", codename=role)
    _, created = AgentUserObjectPermission.objects.get_or_create(permission=permission, user=user,
                                                                 content_object=agent)
    opened = sponsorship.sponsorships_open(actor=actor, pairs=[(agent, user)], note=note) \
        if role == policy.SPONSOR_AGENT else []
    if created or opened:
        after = {"user": user.username, **({"sponsorship": opened[0].state} if opened else {})}
        audit.record(actor=actor, action=f"agent.{role.split('_')[0]}_add", target=agent, workspace=agent.workspace,
                     after=after)


@transaction.atomic
def agent_person_remove(*, actor: User | None, agent: Agent, user: User, role: str) -> None:
    """Remove an owner or sponsor; the last active one of either cannot go (R7)."""
    agent = _lock(agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners change its owners and sponsors.")
    deleted = AgentUserObjectPermission.objects.filter(content_object=agent, user=user,
                                                       permission__codename=role).delete()[0]
    if not deleted:
        return
    if role == policy.SPONSOR_AGENT:
        sponsorship.sponsorship_close(agent=agent, user=user)
    remaining = AgentUserObjectPermission.objects.filter(content_object=agent, permission__codename=role,
                                                         user__is_active=True, user__kind=UserKind.HUMAN)
    if agent.status != AgentStatus.RETIRED and not remaining.exists():
        label = "owner" if role == policy.OWN_AGENT else "active sponsor"
        raise ValidationError(f"An agent keeps at least one {label}; add another before removing "
                              f"{user.username}.")
    audit.record(actor=actor, action=f"agent.{role.split('_')[0]}_remove", target=agent, workspace=agent.workspace,
                 before={"user": user.username})


@transaction.atomic
def agent_set_orphaned(*, actor: User | None, agent: Agent, orphaned: bool) -> bool:
    """R7: flag an agent left without an active sponsor (the orphan sweep), or clear the flag. True if it changed."""
    agent = _lock(agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only owners change an agent's orphan flag.")
    if bool(agent.orphaned_at) == orphaned:
        return False
    before = {"orphaned_at": agent.orphaned_at}
    agent.orphaned_at = timezone.now() if orphaned else None
    agent.save(update_fields=["orphaned_at"])
    audit.record(actor=actor, action="agent.orphaned" if orphaned else "agent.orphan_cleared", target=agent,
                 workspace=agent.workspace, before=before, after={"orphaned_at": agent.orphaned_at})
    return True


@transaction.atomic
def agent_attribute_set(*, actor: User | None, agent: Agent, key: str, value: str) -> AttributeValue:
    """Assign or change one custom security attribute; one audit event with the old and new value (R23).

    A protected key (R20, "Protected attributes") only by Global and Attribute Assignment Administrators; any other
    by the agent's managers too."""
    agent = _lock(agent)
    attributes.require_assignable(actor=actor, agent=agent, keys=[key])
    if not ATTRIBUTE_KEY_RE.match(key) or len(value) > 256:
        raise ValidationError("Attribute names start with a letter (letters, digits, . _ -); values ≤ 256 chars.")
    existing = AttributeValue.objects.filter(agent=agent, key=key).first()
    before = {key: existing.value} if existing else None
    attribute, _ = AttributeValue.objects.update_or_create(agent=agent, key=key, defaults={"value": value})
    audit.record(actor=actor, action="agent.attribute_set", target=agent, workspace=agent.workspace,
                 before=before, after={key: value})
    return attribute


@transaction.atomic
def agent_attribute_remove(*, actor: User | None, agent: Agent, key: str) -> bool:
    """Remove one custom security attribute, with the same rule as assigning it (R20); one audit event with the
    removed value. False (and no event) when the agent has no such attribute."""
    agent = _lock(agent)
    attributes.require_assignable(actor=actor, agent=agent, keys=[key])
    existing = AttributeValue.objects.filter(agent=agent, key=key).first()
    if existing is None:
        return False
    existing.delete()
    audit.record(actor=actor, action="agent.attribute_remove", target=agent, workspace=agent.workspace,
                 before={key: existing.value}, after=None)
    return True
