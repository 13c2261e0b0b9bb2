"""The sign-in log (R20, R22): reads over ``SignIn``, restricted to who may see them.

Every token request leaves one ``SignIn`` row (``governance.signin.oauth``). Directory roles that read security data
(Global, Security and Compliance Administrators, Security and Global Readers) see every row; workspace owners,
explicit or inherited (R11), see the rows of the agents in the workspaces they own; anyone else sees none (403).
A row records no secret and no token value, and the export adds none.

When an agent was last used is not read here but from ``governance.usage.selectors`` (docs/design.md, "Usage"),
the one definition of use that the registry, reviews, the hygiene agent and risk share.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.functional import cached_property

from agents import policy as agent_policy
from agents.models import Agent
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
        # By agent id (the log's agent index), not by a join through the agent's workspace.
        agents = Agent.objects.filter(workspace__in=rbac.workspaces_owned_by(user).values("pk"))
        return SignIn.objects.filter(agent_id__in=list(agents.values_list("pk", flat=True)))
    return SignIn.objects.none()


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, timezone.get_current_timezone())


#: The log's time windows (``period`` in the query string). Without one, or dates, the page shows the last day.
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "all": None}
DEFAULT_PERIOD = "24h"


def signins_filtered(signins: QuerySet[SignIn], filters: Mapping[str, Any],
                     now: datetime | None = None) -> QuerySet[SignIn]:
    """Narrow the log by the page's filters (the filter form's cleaned data; empty values are ignored). Each
    filter is served by an index or by the time window's partitions (docs/design.md, "The sign-in log at volume"):

    ``since`` and ``until`` (dates, both inclusive) or else ``period`` (the last 24 hours by default, 7 or 30 days,
    or ``all`` that is kept) bound the time, so only those days' partitions are read; ``agent`` (name or client
    id, contains) is resolved to agent ids first and read on the agent index, with an exact client id for
    unknown clients on its own index; ``outcome``, ``actor_kind`` and ``ip`` have indexes; ``scope`` (a requested or
    granted scope, contains; matched on the JSON text so it runs the same on SQLite and PostgreSQL) and
    ``credential_type`` are read within the time window.
    """
    if filters.get("since") or filters.get("until"):
        if filters.get("since"):
            signins = signins.filter(at__gte=_start_of(filters["since"]))
        if filters.get("until"):
            signins = signins.filter(at__lt=_start_of(filters["until"] + timedelta(days=1)))
    else:
        window = PERIODS.get(filters.get("period") or DEFAULT_PERIOD)
        if window is not None:
            signins = signins.filter(at__gte=(now or timezone.now()) - window)
    if filters.get("agent"):
        term = filters["agent"]
        agent_ids = list(Agent.objects.filter(Q(name__icontains=term) | Q(identity__client_id__icontains=term))
                         .values_list("pk", flat=True)[:AGENT_MATCH_LIMIT])
        signins = signins.filter(Q(agent_id__in=agent_ids) | Q(agent_id__isnull=True, client_id=term))
    for key in ("outcome", "actor_kind", "credential_type", "ip"):
        if filters.get(key):
            signins = signins.filter(**{key: filters[key]})
    if filters.get("scope"):
        term = filters["scope"]
        signins = signins.filter(Q(requested_scopes__icontains=term) | Q(granted_scopes__icontains=term))
    return signins


#: At most this many agents match an agent filter (a term that matches more is too vague to be useful).
AGENT_MATCH_LIMIT = 1000

#: Above this many rows the log's pages show an estimated count and stop at ``MAX_PAGES`` (docs/design.md).
EXACT_COUNT_LIMIT = 10_000
MAX_PAGES = 200


class LogPaginator(Paginator):
    """Counts the log exactly up to ``EXACT_COUNT_LIMIT`` rows (a count of at most that many index entries), and
    beyond that asks PostgreSQL's planner for an estimate instead of ``COUNT(*)`` over millions of rows:
    ``estimated`` is then True and the page says "about 5.0 million". Pages stop at ``MAX_PAGES`` (an offset
    deeper than that reads every row it skips); narrower filters reach older rows."""

    estimated = False

    @cached_property
    def count(self) -> int:
        bounded = self.object_list.order_by().values("pk")[:EXACT_COUNT_LIMIT + 1].count()
        if bounded <= EXACT_COUNT_LIMIT or connection.vendor != "postgresql":
            return bounded if bounded <= EXACT_COUNT_LIMIT else super().count
        self.estimated = True
        return max(planner_estimate(self.object_list), bounded)

    @cached_property
    def num_pages(self) -> int:
        pages = super().num_pages
        return min(pages, MAX_PAGES) if self.estimated else pages

    @property
    def truncated(self) -> bool:
        return self.estimated and super().num_pages > MAX_PAGES


def planner_estimate(queryset: QuerySet) -> int:
    """PostgreSQL's estimate of how many rows ``queryset`` returns (``EXPLAIN``; no row is read)."""
    sql, params = queryset.order_by().values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


def about(count: int) -> str:
    """An estimate in words: "about 5.0 million", "about 12,000"."""
    if count >= 1_000_000:
        return f"about {count / 1_000_000:.1f} million"
    return f"about {round(count, -(len(str(count)) - 2)):,}"


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


def csv_cell(column: str, value):
    """An export value as one CSV cell: scopes space-separated, policies as compact JSON."""
    if column in ("requested_scopes", "granted_scopes"):
        return " ".join(value)
    if column == "policies":
        return json.dumps(value, separators=(",", ":"))
    return value


def resource_agents() -> dict[str, str]:
    """``{identifier: agent name}`` of the resources that are agents, revoked ones too (one query; there are few):
    the log names the agent a token was for."""
    return dict(ResourceServer.objects.filter(agent__isnull=False, identifier__isnull=False)
                .values_list("identifier", "agent__name"))

