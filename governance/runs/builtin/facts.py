"""What the built-in agents know about agents: one JSON-ready dict per active agent, in a fixed number of
queries whatever the number of agents.

``/api/v1/agent-facts/`` serves these dicts to a run's token, one *section* per kind of data, each included only
when the caller's scopes open it (a token without ``AuditLog.Read.All`` gets no ``usage``). The hygiene and the
conditional-access agents read them there and nowhere else, so what they see is what their permissions allow.

The credentials section holds every way the agent authenticates (R28): its secrets, its keys and the federated
credentials it is trusted through. The shape of one agent (datetimes as ISO 8601 text)::

    {"id", "name", "workspace" (slug), "kind", "publisher_kind", "identity_type", "status", "risk_level",
     "created_at", "orphaned_at", "sponsors" (accepted sponsors, a count: docs/sponsorship.md),
     "credentials": [{"prefix", "expires_at", "replaced"}],                      # unrevoked
     "key_credentials": [{"kid", "expires_at"}],                                 # active (unrevoked, unexpired)
     "federated_credentials": [{"issuer", "subject", "from_blueprint"}],          # unrevoked, own or blueprint's
     "permissions": [{"name", "source" (blueprint|package), "assignment_id", "ends_at", "write"}],
     "run_as_admin": bool,               # a user-account agent whose user holds a privileged directory role
     "usage": {"last_used", "scopes_30d",      # governance.usage's one definition of use (successful sign-ins)
               "permissions_used_30d"},        # ... and of a permission's use (introspected, API, runs: R32)
     "policies": [{"id", "name", "state", "grant", "min_risk_level", "excluded"}]}  # targeting or excluding it
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Q, QuerySet

from agents import selectors as agent_selectors
from agents.choices import AgentStatus, IdentityType
from agents.models import (
    Agent,
    AgentUser,
    AttributeValue,
    Credential,
    FederatedCredential,
    KeyCredential,
    PermissionGrant,
)
from governance.access.choices import AssignmentStatus
from governance.access.models import Assignment
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import RiskLevel
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.usage import selectors as usage_selectors
from portal.models import DirectoryRoleAssignment

CREDENTIALS, PERMISSIONS, RUN_AS_ADMIN = "credentials", "permissions", "run_as_admin"
USAGE, POLICIES = "usage", "policies"
# Part of the credentials section (same scopes): the agent's keys and federated credentials (R28).
KEY_CREDENTIALS, FEDERATED_CREDENTIALS = "key_credentials", "federated_credentials"
ALL_SECTIONS = frozenset({CREDENTIALS, PERMISSIONS, RUN_AS_ADMIN, USAGE, POLICIES})
USAGE_DAYS = 30

# Which token scopes open which section (any one of them); the base facts need one of ``BASE_SCOPES``.
BASE_SCOPES = ("Portal.Agents.Read.All", "User.Read.All", "Directory.Read.All")
SECTION_SCOPES: dict[str, frozenset[str]] = {
    CREDENTIALS: frozenset({"Application.Read.All", "Directory.Read.All", "Portal.Agents.Read.All"}),
    PERMISSIONS: frozenset({"RoleManagement.Read.Directory", "Directory.Read.All", "Portal.Agents.Read.All"}),
    RUN_AS_ADMIN: frozenset({"RoleManagement.Read.Directory", "Directory.Read.All", "Portal.Agents.Read.All"}),
    USAGE: frozenset({"AuditLog.Read.All", "Portal.Audit.Read.All"}),
    POLICIES: frozenset({"Policy.Read.All", "Policy.Read.ConditionalAccess", "Portal.Governance.Read.All"}),
}


def sections_for_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The sections a token with these scopes may read."""
    held = frozenset(scopes)
    return frozenset(section for section, opening in SECTION_SCOPES.items() if held & opening)


def iso(value: datetime | None) -> str | None:
    """A datetime as the API writes it (DRF's format: ISO 8601, UTC as ``Z``)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def parse_iso(value: str | None) -> datetime | None:
    """The inverse of ``iso`` (the built-in agents read the API's text back into aware datetimes)."""
    return datetime.fromisoformat(value) if value else None


def is_write(name: str) -> bool:
    """A permission that changes data (``….ReadWrite.…`` or ``….Write``)."""
    return "ReadWrite" in name or ".Write" in name


def facts(agents: QuerySet[Agent], *, sections: Iterable[str], now: datetime) -> list[dict]:
    """The facts of the active agents among ``agents``, ordered by name, with the requested ``sections``.

    Queries: one for the agents and one for their accepted sponsors, plus credentials 3, permissions 2, run_as_admin 1,
    usage 3, policies 5 — never more with more agents."""
    sections = frozenset(sections)
    unknown = sections - ALL_SECTIONS
    if unknown:
        raise ValueError(f"Unknown agent-facts sections: {', '.join(sorted(unknown))}.")
    rows = list(agents.filter(status=AgentStatus.ACTIVE).select_related("workspace", "blueprint")
                .only("id", "name", "kind", "identity_type", "status", "risk_level", "created_at", "orphaned_at",
                      "run_as_user_id", "workspace__slug", "blueprint__publisher_kind")
                .order_by("name", "pk"))
    if not rows:
        return []
    ids = [a.pk for a in rows]
    # Accepted sponsors only (R30, docs/sponsorship.md): the orphan sweep's and the "Unsponsored" badge's definition;
    # a named sponsor who has not accepted, declined or lapsed does not count.
    sponsors = {agent_id: len(users) for agent_id, users in agent_selectors.accepted_sponsor_ids(ids, now).items()}
    result = [{
        "id": a.pk, "name": a.name, "workspace": a.workspace.slug, "kind": a.kind,
        "publisher_kind": a.blueprint.publisher_kind, "identity_type": a.identity_type, "status": a.status,
        "risk_level": a.risk_level or RiskLevel.NONE, "created_at": iso(a.created_at),
        "orphaned_at": iso(a.orphaned_at), "sponsors": sponsors.get(a.pk, 0),
    } for a in rows]

    if CREDENTIALS in sections:
        credentials = defaultdict(list)
        for agent_id, prefix, expires_at, replaced in (
                Credential.objects.filter(identity__agent_id__in=ids, revoked_at__isnull=True)
                .order_by("expires_at", "pk")
                .values_list("identity__agent_id", "prefix", "expires_at", "replaced_by_id")):
            credentials[agent_id].append({"prefix": prefix, "expires_at": iso(expires_at),
                                          "replaced": replaced is not None})
        keys, federated = _credentials_without_secrets(rows, now)
        for item in result:
            item[CREDENTIALS] = credentials.get(item["id"], [])
            item[KEY_CREDENTIALS] = keys.get(item["id"], [])
            item[FEDERATED_CREDENTIALS] = federated.get(item["id"], [])
    if PERMISSIONS in sections:
        permissions = _permissions(ids, now)
        for item in result:
            item[PERMISSIONS] = permissions.get(item["id"], [])
    if RUN_AS_ADMIN in sections:
        admins = _admin_users({a.run_as_user_id for a in rows if a.identity_type == IdentityType.USER_ACCOUNT})
        for agent, item in zip(rows, result, strict=True):
            item[RUN_AS_ADMIN] = agent.identity_type == IdentityType.USER_ACCOUNT and agent.run_as_user_id in admins
    if USAGE in sections:
        usage = _usage(ids, now)
        for item in result:
            item[USAGE] = usage.get(item["id"], {"last_used": None, "scopes_30d": [], "permissions_used_30d": []})
    if POLICIES in sections:
        policies = _policies(rows)
        for item in result:
            item[POLICIES] = policies.get(item["id"], [])
    return result


def _credentials_without_secrets(rows: list[Agent], now: datetime) -> tuple[dict[int, list[dict]],
                                                                            dict[int, list[dict]]]:
    """The agents' active keys (unrevoked, unexpired) and the federated credentials they are trusted through
    (their own and their blueprint's defaults, unrevoked): two queries whatever the number of agents."""
    ids = [a.pk for a in rows]
    keys: dict[int, list[dict]] = defaultdict(list)
    for agent_id, kid, expires_at in (KeyCredential.objects.filter(identity__agent_id__in=ids, revoked_at__isnull=True,
                                                                   expires_at__gt=now)
                                      .order_by("expires_at", "pk")
                                      .values_list("identity__agent_id", "kid", "expires_at")):
        keys[agent_id].append({"kid": kid, "expires_at": iso(expires_at)})
    by_blueprint: dict[int, list[int]] = defaultdict(list)
    for agent in rows:
        by_blueprint[agent.blueprint_id].append(agent.pk)
    federated: dict[int, list[dict]] = defaultdict(list)
    for agent_id, blueprint_id, issuer, subject in (
            FederatedCredential.objects.filter(Q(agent_id__in=ids) | Q(blueprint_id__in=list(by_blueprint)),
                                               revoked_at__isnull=True)
            .order_by("issuer", "subject", "pk").values_list("agent_id", "blueprint_id", "issuer", "subject")):
        for owner in ([agent_id] if agent_id is not None else by_blueprint.get(blueprint_id, [])):
            federated[owner].append({"issuer": issuer, "subject": subject, "from_blueprint": agent_id is None})
    return keys, federated


def _permissions(ids: list[int], now: datetime) -> dict[int, list[dict]]:
    """Unended grants (the blueprint's, fixed by R3) and the permissions of active, unexpired assignments."""
    found: dict[int, list[dict]] = defaultdict(list)
    for agent_id, name in (PermissionGrant.objects.filter(identity__agent_id__in=ids, ended_at__isnull=True)
                           .values_list("identity__agent_id", "permission__name")):
        found[agent_id].append({"name": name, "source": "blueprint", "assignment_id": None, "ends_at": None,
                                "write": is_write(name)})
    for agent_id, assignment_id, expires_at, name in (
            Assignment.objects.filter(agent_id__in=ids, status=AssignmentStatus.ACTIVE, expires_at__gt=now,
                                      package__permissions__isnull=False)
            .values_list("agent_id", "pk", "expires_at", "package__permissions__name")):
        found[agent_id].append({"name": name, "source": "package", "assignment_id": assignment_id,
                                "ends_at": iso(expires_at), "write": is_write(name)})
    for items in found.values():
        items.sort(key=lambda p: (p["name"], p["source"], p["assignment_id"] or 0))
    return found


def _admin_users(user_ids: set[int]) -> set[int]:
    """Which of these (active) users hold a privileged directory role."""
    if not user_ids:
        return set()
    return set(DirectoryRoleAssignment.objects.filter(user_id__in=user_ids, user__is_active=True,
                                                      role__privileged=True)
               .values_list("user_id", flat=True).distinct())


def _usage(ids: list[int], now: datetime) -> dict[int, dict]:
    """The last use and the scopes used in the last ``USAGE_DAYS`` (governance.usage's definition: the rollup plus
    the log's tail, never a scan of the whole log)."""
    since = now - timedelta(days=USAGE_DAYS)
    found = {agent_id: {"last_used": iso(used.last_used_at), "scopes_30d": sorted(used.scopes_used_since(since)),
                        "permissions_used_30d": []}
             for agent_id, used in usage_selectors.usage(ids).items()}
    # A permission's use is the reviews' definition too (docs/design.md, R32): the same selector.
    for agent_id, names in usage_selectors.permissions_used_since(ids, since).items():
        found.setdefault(agent_id, {"last_used": None, "scopes_30d": []})["permissions_used_30d"] = names
    return found


def _policies(rows: list[Agent]) -> dict[int, list[dict]]:
    """Every policy (whatever its state) that targets the agent or names it as excluded; the targeting is
    conditional access's own (``conditional_access._target_reason``), so the facts agree with the decision point."""
    ids = [a.pk for a in rows]
    policies = list(ConditionalAccessPolicy.objects.prefetch_related("agents", "excluded_agents").order_by("name",
                                                                                                          "pk"))
    attributes: dict[int, dict[str, str]] = defaultdict(dict)
    for agent_id, key, value in AttributeValue.objects.filter(agent_id__in=ids).values_list("agent_id", "key",
                                                                                             "value"):
        attributes[agent_id][key] = value
    with_agent_user = set(AgentUser.objects.filter(identity__agent_id__in=ids)
                          .values_list("identity__agent_id", flat=True))
    excluded_ids = {p.pk: frozenset(a.pk for a in p.excluded_agents.all()) for p in policies}
    found: dict[int, list[dict]] = defaultdict(list)
    for agent in rows:
        agent_facts = conditional_access.AgentFacts(
            agent_id=agent.pk, kind=agent.kind, publisher_kind=agent.blueprint.publisher_kind,
            risk_level=agent.risk_level or RiskLevel.NONE, has_agent_user=agent.pk in with_agent_user,
            attributes=attributes.get(agent.pk, {}))
        for policy in policies:
            excluded = agent.pk in excluded_ids[policy.pk]
            if excluded or conditional_access._target_reason(policy, agent_facts) is not None:
                found[agent.pk].append({"id": policy.pk, "name": policy.name, "state": policy.state,
                                        "grant": policy.grant, "min_risk_level": policy.min_risk_level,
                                        "excluded": excluded})
    return found
