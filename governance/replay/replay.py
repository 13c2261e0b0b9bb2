"""Policy replay (docs/design.md, R29; docs/policy-replay.md): what a conditional-access policy would have blocked
over the sign-ins and run starts already recorded, decided by ``conditional_access.evaluate`` — the function the
token endpoint and run starts call.

Nothing is evaluated row by row. The rows of the window are grouped in SQL by the inputs the policy reads — the
agent, the UTC day, and only when the policy has such a condition: the stretch of the day between two of its
time-window boundaries, whether the client address is in one of its ranges (PostgreSQL; the address itself
elsewhere), the resource, the credential type — with a count per group and whether the row was a success. Each
group is evaluated once, with a representative of its inputs, and its count multiplied. Rows in one group cannot get
different verdicts: the policy reads nothing the group does not fix.

The agent's facts (kind, publisher, risk level, agent user, attributes) are the ones it has now: the log keeps no
history of them (docs/policy-replay.md, "Which facts"). A *legitimate* row is a success (a token issued, a run
started) of an agent that is active now and has no open risk detection.
"""

from __future__ import annotations

import copy
import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import BooleanField, Case, Count, ExpressionWrapper, IntegerField, Min, Q, Value, When
from django.db.models.expressions import RawSQL
from django.db.models.functions import ExtractHour, ExtractMinute, Trunc
from django.utils import timezone

from agents.choices import AgentStatus
from agents.models import Agent, AgentUser, AttributeValue
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import PolicyState
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.risk.choices import DetectionStatus
from governance.risk.models import RiskDetection
from governance.runs.choices import RunStatus
from governance.runs.models import Run
from governance.signin.choices import GrantType, SignInOutcome
from governance.signin.models import SignIn

WINDOWS = (7, 30)  # the windows the pages and the API offer, in days
CA_REFUSAL = "blocked by conditional access"  # how a run refused by a policy records its reason (runs.services)
DRILL_LIMIT = 100  # sign-ins listed in a drill-down; the count says how many there are in all


@dataclass
class AgentRow:
    agent_id: int
    name: str
    sign_ins: int = 0
    run_starts: int = 0
    legitimate: int = 0

    @property
    def total(self) -> int:
        return self.sign_ins + self.run_starts


@dataclass
class DayRow:
    day: date
    sign_ins: int = 0
    run_starts: int = 0
    legitimate: int = 0
    agent_ids: set[int] = field(default_factory=set)

    @property
    def agents(self) -> int:
        return len(self.agent_ids)

    @property
    def total(self) -> int:
        return self.sign_ins + self.run_starts


@dataclass
class Replay:
    """What the policy would have blocked in the window ``[since, until)``, by day and by agent."""

    policy: ConditionalAccessPolicy
    days: int
    since: datetime
    until: datetime
    by_day: list[DayRow]
    by_agent: list[AgentRow]
    sign_ins_replayed: int = 0
    run_starts_replayed: int = 0
    groups_evaluated: int = 0

    @property
    def sign_ins(self) -> int:
        return sum(d.sign_ins for d in self.by_day)

    @property
    def run_starts(self) -> int:
        return sum(d.run_starts for d in self.by_day)

    @property
    def agents(self) -> int:
        return len(self.by_agent)

    @property
    def legitimate(self) -> int:
        return sum(d.legitimate for d in self.by_day)

    def as_dict(self) -> dict:
        """The API's answer (``GET /api/v1/policies/<id>/replay/``)."""
        return {
            "policy": self.policy.pk, "name": self.policy.name, "days": self.days,
            "since": self.since.isoformat(), "until": self.until.isoformat(),
            "sign_ins_replayed": self.sign_ins_replayed, "run_starts_replayed": self.run_starts_replayed,
            "blocked_sign_ins": self.sign_ins, "blocked_run_starts": self.run_starts, "agents": self.agents,
            "legitimate_blocked": self.legitimate,
            "by_day": [{"day": d.day.isoformat(), "sign_ins": d.sign_ins, "run_starts": d.run_starts,
                        "agents": d.agents, "legitimate": d.legitimate} for d in self.by_day],
            "by_agent": [{"agent": a.agent_id, "name": a.name, "sign_ins": a.sign_ins, "run_starts": a.run_starts,
                          "legitimate": a.legitimate} for a in self.by_agent],
        }


# --- the policy as it would be enforced --------------------------------------------------------------------------
def as_enforced(policy: ConditionalAccessPolicy, *, agents: Iterable[Agent] | None = None,
                excluded_agents: Iterable[Agent] | None = None) -> ConditionalAccessPolicy:
    """A copy of ``policy`` that ``evaluate`` treats as live (report-only: evaluated, its verdict "would block"),
    whatever its own state — replaying an off policy asks what it would do once on. ``agents`` and
    ``excluded_agents`` give an unsaved policy's named agents (an edited form); a saved one's are read (two
    queries)."""
    replayed = copy.copy(policy)
    replayed.__dict__.pop("_networks", None)
    if agents is None:
        agents = policy.agents.all() if policy.pk else ()
    if excluded_agents is None:
        excluded_agents = policy.excluded_agents.all() if policy.pk else ()
    replayed.__dict__["_target_ids"] = {"agents": frozenset(a.pk for a in agents),
                                        "excluded_agents": frozenset(a.pk for a in excluded_agents)}
    replayed.state = PolicyState.REPORT_ONLY
    return replayed


def _named_only(policy: ConditionalAccessPolicy) -> frozenset[int] | None:
    """The agents a policy can target at all when it only names agents (None: it may target any agent)."""
    if policy.all_agents or policy.agent_kinds or policy.publisher_kinds or policy.attribute_rules:
        return None
    ids = policy.__dict__["_target_ids"]
    return ids["agents"] - ids["excluded_agents"]


# --- grouping in SQL ---------------------------------------------------------------------------------------------
def _boundaries(policy: ConditionalAccessPolicy) -> list[int]:
    """The minutes of the day (UTC) where some time window starts or ends, with 0: between two of them, and on one
    day, every instant is in the same windows."""
    minutes = {0}
    for window in policy.time_windows or []:
        for key in ("start", "end"):
            hours, mins = window[key].split(":")
            minutes.add(int(hours) * 60 + int(mins))
    return sorted(m for m in minutes if 0 <= m < 1440)


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def _grouped(rows, policy: ConditionalAccessPolicy, *, with_client: bool, time_field: str):
    """``rows`` annotated with the inputs the policy reads, ready for ``values(*keys)``; returns the queryset and
    the keys. With ``with_client`` the client's address, resource and credential type are inputs too (sign-ins);
    run starts have none (``runs.services.authorise_run``)."""
    rows = rows.order_by().annotate(day=Trunc(time_field, "day", tzinfo=UTC))
    keys = ["agent_id", "day"]
    if policy.time_windows:
        minute = ExpressionWrapper(ExtractHour(time_field, tzinfo=UTC) * 60 + ExtractMinute(time_field, tzinfo=UTC),
                                   output_field=IntegerField())
        rows = rows.annotate(minute_of_day=minute)
        bounds = _boundaries(policy)
        rows = rows.annotate(stretch=Case(*[When(minute_of_day__gte=b, then=Value(b)) for b in reversed(bounds)],
                                          default=Value(0), output_field=IntegerField()))
        keys.append("stretch")
    if with_client and policy.ip_ranges:
        if _postgres():
            # inside any of the ranges or not: the only thing the condition reads of an address
            networks = [str(ipaddress.ip_network(r, strict=False)) for r in policy.ip_ranges]
            rows = rows.annotate(inside=RawSQL("COALESCE(ip <<= ANY(%s::inet[]), false)", (networks,)))
            keys.append("inside")
        else:
            keys.append("ip")
    if with_client and policy.resources:
        keys.append("resource")
    if with_client and policy.credential_types:
        keys.append("credential_type")
    return rows, keys


def signins_replayed(since: datetime, until: datetime, agent_ids=None):
    """The sign-ins a replay weighs: those that reached the decision (issued, or blocked by a policy) for an agent,
    token requests only — a run's own token is its run start, replayed from the runs."""
    rows = SignIn.objects.filter(at__gte=since, at__lt=until, agent__isnull=False,
                                 outcome__in=(SignInOutcome.SUCCESS, SignInOutcome.BLOCKED)
                                 ).exclude(grant_type=GrantType.RUN)
    return rows if agent_ids is None else rows.filter(agent_id__in=agent_ids)


def runs_replayed(since: datetime, until: datetime, agent_ids=None):
    """The run starts a replay weighs: every start that reached the decision (started, or refused by a policy)."""
    rows = Run.objects.filter(created_at__gte=since, created_at__lt=until).filter(
        ~Q(status=RunStatus.REFUSED) | Q(refused_reason__startswith=CA_REFUSAL))
    return rows if agent_ids is None else rows.filter(agent_id__in=agent_ids)


# --- facts -------------------------------------------------------------------------------------------------------
def _facts(policy: ConditionalAccessPolicy, ids: Sequence[int]) -> dict[int, tuple]:
    """``{agent id: (facts, name, legitimate)}``: each agent's current facts through ``conditional_access.agent_facts``
    (loaded for all of them in at most four queries), and whether its successes count as legitimate."""
    agents = list(Agent.objects.filter(pk__in=ids).select_related("blueprint"))
    attributes: dict[int, dict] = defaultdict(dict)
    if policy.attribute_rules:
        for agent_id, key, value in AttributeValue.objects.filter(agent_id__in=ids).values_list("agent_id", "key",
                                                                                               "value"):
            attributes[agent_id][key] = value
    with_user = set()
    if "agent_user" in (policy.agent_kinds or []):
        with_user = set(AgentUser.objects.filter(identity__agent_id__in=ids).values_list("identity__agent_id",
                                                                                         flat=True))
    at_risk = set(RiskDetection.objects.filter(agent_id__in=ids, status=DetectionStatus.OPEN)
                  .values_list("agent_id", flat=True))
    found = {}
    for agent in agents:
        agent.prefetched_attributes = attributes.get(agent.pk, {})
        agent.prefetched_has_agent_user = agent.pk in with_user
        facts = conditional_access.agent_facts(agent, [policy])
        found[agent.pk] = (facts, agent.name, agent.status == AgentStatus.ACTIVE and agent.pk not in at_risk)
    return found


def _context(key: dict, day: datetime) -> conditional_access.AccessContext:
    """A representative request of a group: any request with these inputs gets the same verdict."""
    at = day + timedelta(minutes=key.get("stretch", 0))
    ip = key.get("ip") or key.get("some_ip")
    return conditional_access.AccessContext(ip=str(ip) if ip else None, at=at, resource=key.get("resource") or "",
                                            credential_type=key.get("credential_type") or "")


def _blocks(policy, facts, context) -> bool:
    verdict = conditional_access.evaluate(facts, context, [policy]).verdicts[0]
    return verdict.outcome == "block"


# --- the replay --------------------------------------------------------------------------------------------------
def window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last ``days`` whole UTC days up to now: from midnight ``days - 1`` days ago to now."""
    now = now or timezone.now()
    today = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    return today - timedelta(days=days - 1), now


def _groups(rows, policy, *, with_client: bool, time_field: str, success):
    rows, keys = _grouped(rows, policy, with_client=with_client, time_field=time_field)
    extra = {}
    if "inside" in keys:
        extra["some_ip"] = Min("ip")  # a representative: every address of the group gets the same verdict
    return rows.annotate(success=success).values(*keys, "success").annotate(n=Count("pk"), **extra)


def policy_replay(policy: ConditionalAccessPolicy, *, days: int = 7, agent_ids=None,
                  now: datetime | None = None, agents: Iterable[Agent] | None = None,
                  excluded_agents: Iterable[Agent] | None = None) -> Replay:
    """Replay ``policy`` (saved, or an edited copy with ``agents``/``excluded_agents``) over the last ``days``
    days. ``agent_ids`` (a queryset of agent ids, or None for every agent) limits it to the agents the reader may
    see. A fixed number of queries whatever the row count."""
    since, until = window(days, now)
    replayed = as_enforced(policy, agents=agents, excluded_agents=excluded_agents)
    named = _named_only(replayed)
    if named is not None:
        agent_ids = list(named) if agent_ids is None else Agent.objects.filter(pk__in=agent_ids).filter(
            pk__in=named).values("pk")
    sign_in_groups = list(_groups(signins_replayed(since, until, agent_ids), replayed, with_client=True,
                                  time_field="at",
                                  success=Case(When(outcome=SignInOutcome.SUCCESS, then=Value(True)),
                                               default=Value(False), output_field=BooleanField())))
    run_groups = list(_groups(runs_replayed(since, until, agent_ids), replayed, with_client=False,
                              time_field="created_at",
                              success=Case(When(status=RunStatus.REFUSED, then=Value(False)), default=Value(True),
                                           output_field=BooleanField())))
    facts = _facts(replayed, sorted({g["agent_id"] for g in sign_in_groups + run_groups}))
    by_day = {since.date() + timedelta(days=n): DayRow(since.date() + timedelta(days=n)) for n in range(days)}
    by_agent: dict[int, AgentRow] = {}
    result = Replay(policy=policy, days=days, since=since, until=until, by_day=[], by_agent=[])
    for groups, column in ((sign_in_groups, "sign_ins"), (run_groups, "run_starts")):
        for group in groups:
            known = facts.get(group["agent_id"])
            day = group["day"].astimezone(UTC)
            if column == "sign_ins":
                result.sign_ins_replayed += group["n"]
            else:
                result.run_starts_replayed += group["n"]
            if known is None:
                continue
            agent_facts, name, legitimate_agent = known
            result.groups_evaluated += 1
            if not _blocks(replayed, agent_facts, _context(group, day)):
                continue
            row = by_day.setdefault(day.date(), DayRow(day.date()))
            setattr(row, column, getattr(row, column) + group["n"])
            row.agent_ids.add(group["agent_id"])
            agent_row = by_agent.setdefault(group["agent_id"], AgentRow(group["agent_id"], name))
            setattr(agent_row, column, getattr(agent_row, column) + group["n"])
            if group["success"] and legitimate_agent:
                row.legitimate += group["n"]
                agent_row.legitimate += group["n"]
    result.by_day = [by_day[d] for d in sorted(by_day)]
    result.by_agent = sorted(by_agent.values(), key=lambda a: (-a.total, a.name))
    return result


def blocked_sign_ins(policy: ConditionalAccessPolicy, *, days: int = 7, day: date | None = None,
                     agent_id: int | None = None, agent_ids=None, now: datetime | None = None,
                     agents: Iterable[Agent] | None = None, excluded_agents: Iterable[Agent] | None = None,
                     limit: int | None = DRILL_LIMIT):
    """The drill-down: the sign-ins the policy would have blocked in the window (on ``day``, of ``agent_id``),
    newest first, as a queryset of at most ``limit`` rows. The groups are decided as in ``policy_replay``; the rows
    of the blocked ones are then read with one filter (two queries, plus the facts)."""
    since, until = window(days, now)
    if day is not None:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        since, until = max(since, start), min(until, start + timedelta(days=1))
    replayed = as_enforced(policy, agents=agents, excluded_agents=excluded_agents)
    named = _named_only(replayed)
    rows = signins_replayed(since, until, agent_ids)
    if named is not None:
        rows = rows.filter(agent_id__in=named)
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    annotated, keys = _grouped(rows, replayed, with_client=True, time_field="at")
    groups = list(_groups(rows, replayed, with_client=True, time_field="at",
                          success=Value(True, output_field=BooleanField())))
    facts = _facts(replayed, sorted({g["agent_id"] for g in groups}))
    blocked = Q(pk__in=[])
    for group in groups:
        known = facts.get(group["agent_id"])
        if known is None or not _blocks(replayed, known[0], _context(group, group["day"].astimezone(UTC))):
            continue
        blocked |= Q(**{key: group[key] for key in keys})
    found = annotated.filter(blocked).select_related("agent").order_by("-at", "-pk")
    return found[:limit] if limit else found
