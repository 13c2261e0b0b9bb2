"""The one definition of "used" (docs/design.md, "Usage"), read by every page, finding, review and detection.

**An agent is used when it gets a token**: a *successful* sign-in attributed to it. It used a scope when a
successful sign-in granted it that scope, and a resource when a successful sign-in asked for that resource. Failed
and blocked requests are attempts, not uses. Its last use is the time of its latest successful sign-in (stored in
UTC; shown with its zone).

The answer comes from the rollup (``SignInUsage``, everything up to the watermark) plus the tail of the log the
rollup has not reached yet (sign-ins with a higher id), so it is exact whether or not the ``rollup_sign_ins`` job ran
a second ago or an hour ago. The watermark is read first: a rollup batch committed in between only makes the two
parts overlap, and the answers are minima and maxima, which an overlap does not change.

**A permission is used** when a token carrying it was introspected as active by a resource server, authenticated a
call to the portal API, or was issued to a run that asked for it (``AccessToken.last_used_at``, folded into
``PermissionUse``); being granted in a token nobody presented is not a use. ``permission_last_use`` answers it, and
``permission_evidence`` judges it against a window: the access reviews' per-permission evidence and the hygiene
agent's unused-permission finding both read them (docs/design.md, R32).

Consumers: the registry's "Last used" (``agents.signals.last_used``), the agent facts (``/api/v1/agent-facts/``) and
so the hygiene agent's unused-agent and unused-permission findings, the access reviews' evidence and
recommendation, and the risk job's "scope never granted before".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import BigIntegerField, Count, Max, Min, Q, Subquery
from django.db.models.functions import Coalesce, TruncDate

from governance.signin.choices import SignInOutcome
from governance.signin.models import AccessToken, SignIn
from governance.usage.models import PermissionUse, SignInDay, SignInRollupMark, SignInUsage
from governance.usage.rollup import MARK, token_use_tail_start, watermark

USED = SignInOutcome.SUCCESS


@dataclass(frozen=True)
class Use:
    """The first and the last successful sign-in of something (an agent, a scope, a resource)."""

    first: datetime
    last: datetime

    def merged(self, other: Use | None) -> Use:
        if other is None:
            return self
        return Use(min(self.first, other.first), max(self.last, other.last))


@dataclass
class AgentUsage:
    """What one agent used: overall, per granted scope, per resource (``""``: no resource asked for)."""

    used: Use | None = None
    scopes: dict[str, Use] = field(default_factory=dict)
    resources: dict[str, Use] = field(default_factory=dict)

    @property
    def last_used_at(self) -> datetime | None:
        return self.used.last if self.used else None

    @property
    def first_used_at(self) -> datetime | None:
        return self.used.first if self.used else None

    def scopes_used_since(self, since: datetime) -> set[str]:
        """The scopes last used at or after ``since``."""
        return {scope for scope, use in self.scopes.items() if use.last >= since}

    def scopes_used_before(self, moment: datetime) -> set[str]:
        """The scopes first used before ``moment``."""
        return {scope for scope, use in self.scopes.items() if use.first < moment}

    def add(self, scopes: Iterable[str], resource: str, use: Use) -> None:
        self.used = use.merged(self.used)
        for scope in scopes:
            self.scopes[scope] = use.merged(self.scopes.get(scope))
        self.resources[resource] = use.merged(self.resources.get(resource))


def last_used(agent_ids: Iterable[int]) -> dict[int, datetime]:
    """Each agent's last use (agents never used are absent): two queries, the watermark, then the rollup's maxima
    and the tail's in one statement. The watermark is read first (see the module's docstring) and passed as a value:
    the planner then reads the tail on the log's primary key in each partition, where a subquery's unknown value
    made it scan every partition of the log."""
    ids = sorted({agent_id for agent_id in agent_ids if agent_id is not None})
    if not ids:
        return {}
    through = watermark()
    rolled = (SignInUsage.objects.filter(agent_id__in=ids, last_used_at__isnull=False).order_by()
              .values("agent_id").annotate(last=Max("last_used_at")).values_list("agent_id", "last"))
    tail = (SignIn.objects.filter(agent_id__in=ids, outcome=USED, id__gt=through).order_by()
            .values("agent_id").annotate(last=Max("at")).values_list("agent_id", "last"))
    found: dict[int, datetime] = {}
    for agent_id, last in rolled.union(tail, all=True):
        if last is not None and (agent_id not in found or last > found[agent_id]):
            found[agent_id] = last
    return found


def usage(agent_ids: Iterable[int]) -> dict[int, AgentUsage]:
    """What each agent used, per scope and per resource (agents never used are absent). Three queries whatever
    the number of agents or the length of the log: the watermark, the rollup's rows grouped per agent, scope and
    resource, and the tail grouped the same way."""
    ids = sorted({agent_id for agent_id in agent_ids if agent_id is not None})
    if not ids:
        return {}
    through = watermark()  # first: see the module's docstring
    found: dict[int, AgentUsage] = defaultdict(AgentUsage)
    for agent_id, scope, resource, first, last in (
            SignInUsage.objects.filter(agent_id__in=ids, last_used_at__isnull=False).order_by()
            .values("agent_id", "scope", "resource").annotate(first=Min("first_used_at"), last=Max("last_used_at"))
            .values_list("agent_id", "scope", "resource", "first", "last")):
        found[agent_id].add([scope] if scope else [], resource, Use(first, last))
    for agent_id, scopes, resource, first, last in (
            SignIn.objects.filter(agent_id__in=ids, outcome=USED, id__gt=through).order_by()
            .values("agent_id", "granted_scopes", "resource").annotate(first=Min("at"), last=Max("at"))
            .values_list("agent_id", "granted_scopes", "resource", "first", "last")):
        found[agent_id].add([s for s in (scopes if isinstance(scopes, list) else []) if s], resource,
                            Use(first, last))
    return dict(found)


def last_used_per_scope(agent_ids: Iterable[int]) -> dict[int, dict[str, datetime]]:
    """``{agent_id: {scope: last use}}``."""
    return {agent_id: {scope: use.last for scope, use in found.scopes.items()}
            for agent_id, found in usage(agent_ids).items()}


def last_used_per_resource(agent_ids: Iterable[int]) -> dict[int, dict[str, datetime]]:
    """``{agent_id: {resource: last use}}`` (``""``: tokens asked for no resource)."""
    return {agent_id: {resource: use.last for resource, use in found.resources.items()}
            for agent_id, found in usage(agent_ids).items()}


@dataclass(frozen=True)
class DayTotal:
    """One agent's sign-ins of one UTC day, each counted once (not once per granted scope)."""

    successes: int
    failures: int
    blocked: int

    @property
    def total(self) -> int:
        return self.successes + self.failures + self.blocked

    @property
    def refused_or_failed(self) -> int:
        return self.failures + self.blocked


def sign_ins_per_day(agent_id: int, first_day: date, last_day: date) -> dict[date, DayTotal]:
    """The agent's sign-ins per UTC day from ``first_day`` to ``last_day`` (whole days; days without any are
    absent): the agent page's timeline. Two queries whatever the length of the log: the watermark, then the rollup's
    per-day totals (``SignInDay``) and the tail's counts per day in one ``UNION ALL``.

    These are counts, which an overlap would change (unlike ``last_used``'s maxima), so the tail also skips the ids
    up to the watermark as the ``UNION ALL`` itself sees it: both halves read one snapshot, and a batch committed
    after the first query moves rows from the tail to the rollup without counting them twice. The watermark read
    first stays in the tail's query as a value, so the planner reads each partition's key from it (see
    ``last_used``); the window's bounds keep the tail to the window's partitions."""
    through = watermark()
    start = datetime.combine(first_day, time.min, UTC)
    end = datetime.combine(last_day + timedelta(days=1), time.min, UTC)
    now_through = Coalesce(Subquery(SignInRollupMark.objects.filter(name=MARK).values("integrated_through")[:1]),
                           0, output_field=BigIntegerField())
    rolled = (SignInDay.objects.filter(agent_id=agent_id, day__gte=first_day, day__lte=last_day).order_by()
              .values_list("day", "successes", "failures", "blocked"))
    tail = (SignIn.objects.filter(agent_id=agent_id, at__gte=start, at__lt=end, id__gt=through)
            .filter(id__gt=now_through).order_by().annotate(utc_day=TruncDate("at", tzinfo=UTC)).values("utc_day")
            .annotate(ok=Count("pk", filter=Q(outcome=SignInOutcome.SUCCESS)),
                      failed=Count("pk", filter=Q(outcome=SignInOutcome.FAILURE)),
                      refused=Count("pk", filter=Q(outcome=SignInOutcome.BLOCKED)))
            .values_list("utc_day", "ok", "failed", "refused"))
    found: dict[date, list[int]] = {}
    for day, successes, failures, blocked in rolled.union(tail, all=True):
        counts = found.setdefault(day, [0, 0, 0])
        counts[0] += successes
        counts[1] += failures
        counts[2] += blocked
    return {day: DayTotal(*counts) for day, counts in sorted(found.items()) if sum(counts)}


# --- per permission (docs/design.md, "Usage" and R32) --------------------------------------------------------------
def permission_last_use(agent_ids: Iterable[int]) -> dict[int, dict[str, datetime]]:
    """``{agent_id: {permission: last use}}`` in the one definition of a permission's use (see the module's
    docstring); permissions never used are absent. Three queries whatever the number of agents: the fold's mark,
    the folded days' maxima, and the tokens used since the mark (on the tokens' partial index)."""
    ids = sorted({agent_id for agent_id in agent_ids if agent_id is not None})
    if not ids:
        return {}
    tail_start = token_use_tail_start()  # first: a fold committed in between only makes the two parts overlap
    found: dict[int, dict[str, datetime]] = defaultdict(dict)

    def note(agent_id: int, permission: str, at: datetime) -> None:
        if permission and (permission not in found[agent_id] or at > found[agent_id][permission]):
            found[agent_id][permission] = at

    for agent_id, permission, last in (PermissionUse.objects.filter(agent_id__in=ids).order_by()
                                       .values("agent_id", "permission").annotate(last=Max("last_used_at"))
                                       .values_list("agent_id", "permission", "last")):
        note(agent_id, permission, last)
    tail = AccessToken.objects.filter(agent_id__in=ids, last_used_at__isnull=False)
    if tail_start is not None:
        tail = tail.filter(last_used_at__gte=tail_start)
    for agent_id, scopes, last in tail.order_by().values_list("agent_id", "scopes", "last_used_at"):
        for permission in scopes if isinstance(scopes, list) else []:
            note(agent_id, str(permission), last)
    return dict(found)


@dataclass(frozen=True)
class PermissionEvidence:
    """One held permission judged against a window: ``used`` when its last use is at or after ``since``."""

    permission: str
    last_used_at: datetime | None
    used: bool


def permission_evidence(held: dict[int, Iterable[str]], since: datetime) -> dict[int, list[PermissionEvidence]]:
    """For each agent, each permission it holds (sorted by name) with its last use and whether it was used at or
    after ``since``: the reviews' evidence and the hygiene agent's finding (three queries)."""
    last = permission_last_use(held)
    found: dict[int, list[PermissionEvidence]] = {}
    for agent_id, names in held.items():
        uses = last.get(agent_id, {})
        found[agent_id] = [PermissionEvidence(name, uses.get(name), name in uses and uses[name] >= since)
                           for name in sorted(set(names))]
    return found


def permissions_used_since(agent_ids: Iterable[int], since: datetime) -> dict[int, list[str]]:
    """The permissions each agent used at or after ``since`` (sorted), for the agent facts."""
    return {agent_id: sorted(p for p, at in used.items() if at >= since)
            for agent_id, used in permission_last_use(agent_ids).items()}
