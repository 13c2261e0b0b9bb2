"""The sign-in log (R20, R22): reads over ``SignIn``, restricted to who may see them, and each agent's last use.

Every token request leaves one ``SignIn`` row (``governance.signin.oauth``). Directory roles that read security data
(Global, Security and Compliance Administrators, Security and Global Readers) see every row; workspace owners,
explicit or inherited (R11), see the rows of the agents in the workspaces they own; anyone else sees none (403).
A row records no secret and no token value, and the export adds none.

``last_used`` answers the registry's ``agents.signals.last_used`` (connected in this app's ``ready``; the registry is
a lower layer and may not import governance: docs/design.md, Layers), so the registry pages show when an agent last
got a token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db.models import Max, Q, QuerySet
from django.utils import timezone

from agents import policy as agent_policy
from governance.signin.choices import SignInOutcome
from governance.signin.models import ResourceServer, SignIn
from portal import rbac

# Directory roles that see every sign-in, whichever workspace the agent is in.
SIGNIN_READER_ROLES = frozenset({rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR, rbac.SECURITY_READER,
                                 rbac.COMPLIANCE_ADMINISTRATOR, rbac.GLOBAL_READER})

# The export's columns, in order (``agent`` is the agent's name, ``subject`` the user's username).
# ``resource`` is the audience asked for and ``resource_agent`` the agent's name when that resource is an agent
# (an agent-to-agent token: both parties are in the row). ``credential_type`` is how the client authenticated
# (secret, key, federated) and ``credential_issuer`` the issuer of a federated credential's token (R28).
EXPORT_COLUMNS = ("id", "at", "agent_id", "agent", "client_id", "actor_kind", "subject", "ip", "grant_type",
                  "requested_scopes", "granted_scopes", "outcome", "error", "reason", "policies", "resource",
                  "credential_type", "credential_issuer", "resource_agent")
_EXPORT_SOURCES = tuple({"agent": "agent__name", "subject": "subject__username"}.get(c, c)
                        for c in EXPORT_COLUMNS if c != "resource_agent")


def can_read_all_signins(user) -> bool:
    return bool(rbac.role_keys(user) & SIGNIN_READER_ROLES)


def can_view_signins(user) -> bool:
    """Sign-in readers and owners of at least one workspace; anyone else gets a 403."""
    return can_read_all_signins(user) or rbac.owns_any_workspace(user)


def signins_visible_to(user) -> QuerySet[SignIn]:
    """Every sign-in for sign-in readers; the sign-ins of their workspaces' agents for owners; none otherwise."""
    if not user.is_authenticated or not user.is_active:
        return SignIn.objects.none()
    if can_read_all_signins(user):
        return SignIn.objects.all()
    if rbac.owns_any_workspace(user):
        return SignIn.objects.filter(agent__workspace__in=rbac.workspaces_owned_by(user).values("pk"))
    return SignIn.objects.none()


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, timezone.get_current_timezone())


def signins_filtered(signins: QuerySet[SignIn], filters: Mapping[str, Any]) -> QuerySet[SignIn]:
    """Narrow the log by the page's filters (the filter form's cleaned data; empty values are ignored):

    ``agent`` (name or client id, contains), ``outcome``, ``actor_kind``, ``credential_type``, ``ip`` (exact),
    ``since`` and ``until``
    (dates, both inclusive) and ``scope`` (a requested or granted scope, contains; matched on the JSON text so it
    runs the same on SQLite and PostgreSQL).
    """
    if filters.get("agent"):
        term = filters["agent"]
        signins = signins.filter(Q(agent__name__icontains=term) | Q(client_id__icontains=term))
    for key in ("outcome", "actor_kind", "credential_type", "ip"):
        if filters.get(key):
            signins = signins.filter(**{key: filters[key]})
    if filters.get("since"):
        signins = signins.filter(at__gte=_start_of(filters["since"]))
    if filters.get("until"):
        signins = signins.filter(at__lt=_start_of(filters["until"] + timedelta(days=1)))
    if filters.get("scope"):
        term = filters["scope"]
        signins = signins.filter(Q(requested_scopes__icontains=term) | Q(granted_scopes__icontains=term))
    return signins


def signins_for_page(signins: QuerySet[SignIn]) -> QuerySet[SignIn]:
    """Newest first, with what each row shows joined in (one query per page whatever its length)."""
    return signins.select_related("agent", "subject").order_by("-at", "-pk")


def visible_agent_ids(user, agent_ids: Iterable[int]) -> set[int]:
    """Which of these agents the user may open (one query): the log links only to those."""
    ids = {agent_id for agent_id in agent_ids if agent_id is not None}
    if not ids:
        return set()
    return set(agent_policy.agents_visible_to(user).filter(pk__in=ids).values_list("pk", flat=True))


def export_rows(signins: QuerySet[SignIn], chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Stream the filtered log as flat dicts, oldest first, without loading the whole set (a server-side cursor on
    PostgreSQL). Only the columns in ``EXPORT_COLUMNS``: no token, no secret."""
    agent_resources = resource_agents()
    rows = signins.order_by("at", "pk").values_list(*_EXPORT_SOURCES).iterator(chunk_size=chunk_size)
    for row in rows:
        item = dict(zip(EXPORT_COLUMNS, row, strict=False))
        item["at"] = item["at"].isoformat()
        item["agent"] = item["agent"] or ""
        item["subject"] = item["subject"] or ""
        item["resource_agent"] = agent_resources.get(item["resource"], "")
        yield item


def resource_agents() -> dict[str, str]:
    """``{identifier: agent name}`` of the resources that are agents, revoked ones too (one query; there are few):
    the log names the agent a token was for."""
    return dict(ResourceServer.objects.filter(agent__isnull=False, identifier__isnull=False)
                .values_list("identifier", "agent__name"))


def last_used(agent_ids: Iterable[int]) -> dict[int, datetime]:
    """When each agent last got a token: its latest successful sign-in (one query; agents never used are absent)."""
    ids = list(agent_ids)
    if not ids:
        return {}
    return dict(SignIn.objects.filter(agent_id__in=ids, outcome=SignInOutcome.SUCCESS).order_by()
                .values("agent_id").annotate(last=Max("at")).values_list("agent_id", "last"))
