"""Risk for agents (R21): detections roll up to the agent's risk level; a policy can remediate automatically.

``record_detection`` is the one way a detection is raised (by the token endpoint at request time, the
``evaluate_risk`` job, or an administrator confirming a compromise). The agent's ``risk_level`` is the highest
level among its open (or confirmed-compromised) detections. When the remediation policy is on and the level
reaches its threshold, the agent is disabled by the system and its tokens are revoked, in the same transaction.

Who sees risk: Global and Security Administrators, Security and Global Readers see every agent's; workspace owners
(inherited owners included) see their workspaces' agents', read-only. Only Global and Security Administrators
decide detections, confirm a compromise and set the remediation policy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Min, QuerySet
from django.db.models.functions import TruncDate, TruncMinute
from django.urls import reverse
from django.utils import timezone

from agents import registry
from agents.choices import AgentStatus
from agents.models import Agent
from governance.conditional_access.choices import RiskLevel
from governance.conditional_access.services import RISK_ORDER, can_manage_policies
from governance.risk.choices import DetectionKind, DetectionStatus
from governance.risk.models import RiskDetection, RiskRemediationPolicy
from governance.signin import tokens
from governance.signin.choices import SignInOutcome
from governance.signin.models import SignIn
from governance.usage import selectors as usage
from portal import audit, changes, jobs, rbac
from portal.choices import JobStatus
from portal.models import JobRun, User

COUNTING = (DetectionStatus.OPEN, DetectionStatus.CONFIRMED_COMPROMISED)
RISK_READER_ROLES = frozenset({rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR, rbac.SECURITY_READER,
                               rbac.GLOBAL_READER})
DECIDE_REFUSAL = "Only Global and Security Administrators decide on risk."

# What a decision may change: an open detection takes any decision; a confirmed compromise can still be closed
# as safe or dismissed once it is dealt with (otherwise the agent would stay at high risk for good).
DECISIONS_FROM = {
    DetectionStatus.CONFIRMED_COMPROMISED: (DetectionStatus.OPEN,),
    DetectionStatus.CONFIRMED_SAFE: (DetectionStatus.OPEN, DetectionStatus.CONFIRMED_COMPROMISED),
    DetectionStatus.DISMISSED: (DetectionStatus.OPEN, DetectionStatus.CONFIRMED_COMPROMISED),
}


# --- who may ----------------------------------------------------------------------------------------------------------
def can_decide(user) -> bool:
    """Deciding detections, confirming a compromise, the remediation policy: as conditional access (R20)."""
    return can_manage_policies(user)


def _reads_every_agent(user) -> bool:
    return bool(rbac.role_keys(user) & RISK_READER_ROLES) or rbac.is_inherited_owner(user)


def can_view_risk(user) -> bool:
    """The risk pages: the tenant-wide readers, and owners of at least one workspace (for its agents)."""
    return _reads_every_agent(user) or rbac.owns_any_workspace(user)


def agents_at_risk_visible_to(user) -> QuerySet[Agent]:
    """The agents whose risk the user may read (one query when evaluated; no rows for anyone else)."""
    if not user.is_authenticated or not user.is_active:
        return Agent.objects.none()
    if _reads_every_agent(user):
        return Agent.objects.all()
    return Agent.objects.filter(workspace__in=rbac.workspaces_owned_by(user).values("pk"))


# --- the level and remediation ----------------------------------------------------------------------------------------
def remediation_policy() -> RiskRemediationPolicy:
    return RiskRemediationPolicy.objects.order_by("pk").first() or RiskRemediationPolicy(enabled=False)


def level_of(agent: Agent) -> str:
    levels = RiskDetection.objects.filter(agent=agent, status__in=COUNTING).values_list("level", flat=True)
    return max(levels, key=lambda level: RISK_ORDER[level], default=RiskLevel.NONE)


def refresh_level(agent: Agent) -> str:
    """Recompute and store the agent's risk level; remediate when the policy says so. Returns the level."""
    level = level_of(agent)
    if agent.risk_level != level:
        Agent.objects.filter(pk=agent.pk).update(risk_level=level)
        agent.risk_level = level
    policy = remediation_policy()
    if (policy.enabled and RISK_ORDER[level] >= RISK_ORDER[policy.min_level]
            and agent.status == AgentStatus.ACTIVE):
        remediate(agent, level)
    return level


def remediate(agent: Agent, level: str) -> None:
    """Automatic remediation: disable the agent as the system and revoke its tokens (R21, R22)."""
    registry.agent_disable(actor=None, agent=agent, reason=f"automatic risk remediation at {level} risk")
    tokens.revoke_agent_tokens(agent, "risk remediation")
    agent.status = AgentStatus.DISABLED


def _create(*, agent: Agent, kind: str, level: str, key: str, detail: str, actor, action: str,
            status: str = DetectionStatus.OPEN) -> RiskDetection | None:
    now = timezone.now()
    decided = status != DetectionStatus.OPEN
    try:
        with transaction.atomic():
            detection = RiskDetection.objects.create(
                agent=agent, kind=kind, level=level, key=key[:200], detail=detail[:300], detected_at=now,
                status=status, resolved_by=actor if decided else None, resolved_at=now if decided else None)
    except IntegrityError:
        return None
    audit.record(actor=actor, action=action, target=agent, workspace=agent.workspace,
                 after={"detection_id": detection.pk, "kind": kind, "level": level, "status": status,
                        "detail": detection.detail})
    refresh_level(agent)
    return detection


@transaction.atomic
def record_detection(*, agent: Agent, kind: str, level: str, key: str = "", detail: str = "",
                     actor=None) -> RiskDetection | None:
    """Raise a detection unless the same (agent, kind, key) exists; audited; refreshes the agent's level."""
    return _create(agent=agent, kind=kind, level=level, key=key, detail=detail, actor=actor, action="risk.detect")


def failed_authentication(agent: Agent, failures: int, locked_out: bool, address: str = "") -> RiskDetection | None:
    """Repeated failed client authentication: a medium detection past ``OAUTH_FAILED_AUTH_RISK`` failures in 15
    minutes (from any address), and one when an address got the client id locked out; one of each per window.

    Never high: anyone who knows a client id can fail on purpose, so failures alone do not show the agent is
    compromised, and a high level could let a stranger have the agent disabled by remediation (R21)."""
    window = int(time.time() // 900)
    if locked_out:
        return record_detection(agent=agent, kind=DetectionKind.FAILED_CREDENTIALS, level=RiskLevel.MEDIUM,
                                key=f"locked:{window}",
                                detail=f"{failures} failed client authentications in 15 minutes; client id locked out "
                                       f"at {address or 'an unknown address'}")
    if failures >= settings.OAUTH_FAILED_AUTH_RISK:
        return record_detection(agent=agent, kind=DetectionKind.FAILED_CREDENTIALS, level=RiskLevel.MEDIUM,
                                key=f"failures:{window}",
                                detail=f"{failures} failed client authentications in 15 minutes")
    return None


# --- administrators' decisions (R21: admins confirm or dismiss) -------------------------------------------------------
def _decide(*, actor: User | None, detection: RiskDetection, status: str) -> RiskDetection:
    if actor is not None and not can_decide(actor):
        raise PermissionDenied(DECIDE_REFUSAL)
    detection = (RiskDetection.objects.select_for_update(of=("self",)).select_related("agent__workspace")
                 .get(pk=detection.pk))
    if detection.status not in DECISIONS_FROM[status]:
        raise ValidationError(f"This detection is already {detection.get_status_display().lower()}; "
                              f"it cannot be marked {DetectionStatus(status).label.lower()}.")
    before = {"status": detection.status, "level": detection.level}
    detection.status, detection.resolved_by, detection.resolved_at = status, actor, timezone.now()
    if status == DetectionStatus.CONFIRMED_COMPROMISED:
        detection.level = RiskLevel.HIGH  # a confirmed compromise counts at high, whatever raised it
    detection.save(update_fields=["status", "level", "resolved_by", "resolved_at"])
    agent = detection.agent
    if status == DetectionStatus.CONFIRMED_COMPROMISED:  # R22: a compromised agent's tokens end now
        tokens.revoke_agent_tokens(agent, "confirmed compromised")
    audit.record(actor=actor, action=f"risk.{status}", target=agent, workspace=agent.workspace, before=before,
                 after={"detection_id": detection.pk, "kind": detection.kind, "status": status,
                        "level": detection.level})
    refresh_level(agent)
    return detection


@transaction.atomic
def detection_confirm_compromised(*, actor: User | None, detection: RiskDetection) -> RiskDetection:
    """Confirm an open detection as a compromise: it counts at high, the agent's tokens are revoked (R21, R22)."""
    return _decide(actor=actor, detection=detection, status=DetectionStatus.CONFIRMED_COMPROMISED)


@transaction.atomic
def detection_confirm_safe(*, actor: User | None, detection: RiskDetection) -> RiskDetection:
    """Confirm a detection as safe: it stops counting towards the agent's risk (R21)."""
    return _decide(actor=actor, detection=detection, status=DetectionStatus.CONFIRMED_SAFE)


@transaction.atomic
def detection_dismiss(*, actor: User | None, detection: RiskDetection) -> RiskDetection:
    """Dismiss a detection: it stops counting towards the agent's risk (R21)."""
    return _decide(actor=actor, detection=detection, status=DetectionStatus.DISMISSED)


DECISIONS = {"compromised": detection_confirm_compromised, "safe": detection_confirm_safe,
             "dismiss": detection_dismiss}


@transaction.atomic
def agent_confirm_compromised(*, actor: User | None, agent: Agent, reason: str) -> RiskDetection:
    """An administrator confirms an agent compromised: an admin-confirmed detection at high, the agent's tokens
    revoked, and with remediation on the agent disabled (R21, R22)."""
    if actor is not None and not can_decide(actor):
        raise PermissionDenied(DECIDE_REFUSAL)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Say why the agent is compromised.")
    if len(reason) > 300:
        raise ValidationError("Keep the reason to 300 characters.")
    agent = Agent.objects.select_for_update().select_related("workspace").get(pk=agent.pk)
    if agent.status == AgentStatus.RETIRED:
        raise ValidationError(f"{agent.name} is retired: it has no credentials or tokens left to compromise.")
    detection = _create(agent=agent, kind=DetectionKind.ADMIN_CONFIRMED, level=RiskLevel.HIGH,
                        key=timezone.now().isoformat(), detail=reason, actor=actor,
                        action="risk.agent_confirm_compromised", status=DetectionStatus.CONFIRMED_COMPROMISED)
    if detection is None:  # the same microsecond twice: a double submit
        raise ValidationError("That confirmation was just recorded.")
    tokens.revoke_agent_tokens(agent, "confirmed compromised")
    return detection


REMEDIATION_CHANGE = "risk.remediation_policy"


def remediation_policy_save(*, actor: User | None, enabled: bool, min_level: str, break_glass: bool = False,
                            justification: str = "") -> RiskRemediationPolicy | changes.ChangeRequest:
    """Set automatic remediation (R21). A high-impact change (R31): it waits for a second administrator unless
    the organisation switched that off or ``break_glass`` (docs/four-eyes.md); then the pending request is
    returned."""
    return changes.gate(actor=actor, kind=REMEDIATION_CHANGE, payload={"enabled": enabled, "min_level": min_level},
                        break_glass=break_glass, justification=justification)


def _apply_remediation_policy(*, actor: User | None, payload: dict) -> RiskRemediationPolicy:
    return _remediation_policy_save_now(actor=actor, enabled=payload["enabled"], min_level=payload["min_level"])


changes.register(REMEDIATION_CHANGE, label="Change automatic risk remediation", apply=_apply_remediation_policy,
                 describe=lambda p: (f"on at {p['min_level']} risk and above" if p["enabled"] is True else "off"),
                 outcome=lambda policy: "Automatic remediation saved.")


@transaction.atomic
def _remediation_policy_save_now(*, actor: User | None, enabled: bool, min_level: str) -> RiskRemediationPolicy:
    """Set automatic remediation (R21): at or above ``min_level``, disable the agent and revoke its tokens."""
    if actor is not None and not can_decide(actor):
        raise PermissionDenied("Only Global and Security Administrators set automatic remediation.")
    if min_level not in (RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH):
        raise ValidationError("Choose the level that triggers remediation: low, medium or high.")
    if not isinstance(enabled, bool):
        raise ValidationError("Say whether automatic remediation is on or off.")
    policy = RiskRemediationPolicy.objects.select_for_update().order_by("pk").first()
    if policy is None:
        policy = RiskRemediationPolicy(enabled=False)
    before = {"enabled": policy.enabled, "min_level": policy.min_level} if policy.pk else None
    policy.enabled, policy.min_level = enabled, min_level
    policy.updated_by, policy.updated_at = actor, timezone.now()
    policy.save()
    audit.record(actor=actor, action="risk.remediation_policy", target=policy, before=before,
                 after={"enabled": enabled, "min_level": min_level})
    return policy


# --- the evaluate_risk job (docs/design.md, Scheduled jobs) -----------------------------------------------------------

FIRST_WINDOW = timedelta(minutes=15)
# Sign-ins are stamped when the request starts and committed when it ends, and a minute's burst may straddle two
# runs: each run looks back this much before the previous run's start (the detection keys absorb the overlap).
OVERLAP = timedelta(minutes=1)


@dataclass(frozen=True)
class Finding:
    agent_id: int
    kind: str
    level: str
    key: str
    detail: str


def evaluation_start(now: datetime) -> datetime:
    """The watermark: the previous successful run's start (less the overlap), else the last 15 minutes; on a
    whole minute so a burst minute is always counted whole."""
    last = (JobRun.objects.filter(job="evaluate_risk", status=JobStatus.SUCCEEDED).order_by("-started_at")
            .values_list("started_at", flat=True).first())
    start = last - OVERLAP if last else now - FIRST_WINDOW
    return start.replace(second=0, microsecond=0)


def _new_scopes(since: datetime) -> list[Finding]:
    """A successful sign-in granting a scope the agent was never granted before (not its very first sign-in).

    "Granted before" is governance.usage's one definition of use (docs/design.md, "Usage"): the scopes whose first
    use came before the window, read from the usage rollup and the log's tail, never from the whole log. Five
    queries: the agents signed in during the window, their usage (three), then the window's successful sign-ins
    (streamed)."""
    in_window = SignIn.objects.filter(outcome=SignInOutcome.SUCCESS, agent__isnull=False, at__gte=since)
    history = usage.usage(in_window.order_by().values_list("agent_id", flat=True).distinct())
    known: dict[int, set[str]] = {agent_id: used.scopes_used_before(since) for agent_id, used in history.items()
                                  if used.first_used_at is not None and used.first_used_at < since}
    seen_before = set(known)
    findings = []
    for agent_id, at, scopes in in_window.order_by("agent_id", "at", "pk").values_list(
            "agent_id", "at", "granted_scopes").iterator(chunk_size=2000):
        have = known.setdefault(agent_id, set())
        if agent_id in seen_before:
            findings += [Finding(agent_id, DetectionKind.NEW_SCOPE, RiskLevel.LOW, scope,
                                 f"{scope} granted for the first time at {at:%Y-%m-%d %H:%M:%S} UTC")
                         for scope in sorted(set(scopes or ()) - have)]
        seen_before.add(agent_id)
        have.update(scopes or ())
    return findings


def _bursts(since: datetime) -> list[Finding]:
    """More than RISK_BURST_PER_MINUTE token requests (any outcome) by one agent in one clock minute: one query."""
    limit = settings.RISK_BURST_PER_MINUTE
    rows = (SignIn.objects.filter(agent__isnull=False, at__gte=since)
            .annotate(minute=TruncMinute("at", tzinfo=UTC)).order_by().values("agent_id", "minute")
            .annotate(requests=Count("pk")).filter(requests__gt=limit))
    return [Finding(row["agent_id"], DetectionKind.REQUEST_BURST, RiskLevel.MEDIUM,
                    row["minute"].astimezone(UTC).isoformat(),
                    f"{row['requests']} token requests in the minute from {row['minute']:%Y-%m-%d %H:%M} UTC "
                    f"(more than {limit})")
            for row in rows]


def _orphaned_use(since: datetime) -> list[Finding]:
    """Successful sign-ins by an agent after it was flagged orphaned (no active sponsor, R7): one query."""
    rows = (SignIn.objects.filter(outcome=SignInOutcome.SUCCESS, at__gte=since, agent__orphaned_at__isnull=False)
            .filter(at__gte=F("agent__orphaned_at")).annotate(day=TruncDate("at", tzinfo=UTC)).order_by()
            .values("agent_id", "day").annotate(sign_ins=Count("pk"), first=Min("at")))
    return [Finding(row["agent_id"], DetectionKind.ORPHANED_USE, RiskLevel.MEDIUM, row["day"].isoformat(),
                    f"{row['sign_ins']} successful sign-in(s) on {row['day']:%Y-%m-%d} while it had no active "
                    f"sponsor (first at {row['first']:%H:%M:%S} UTC)")
            for row in rows]


def _record_findings(findings: list[Finding]) -> tuple[list[RiskDetection], int, int]:
    """Create the detections not yet raised, audit them, refresh the agents' levels: one transaction per batch of
    agents, whose rows are locked so a second worker waits, then finds the keys taken and adds nothing."""
    by_agent: dict[int, list[Finding]] = {}
    for finding in findings:
        by_agent.setdefault(finding.agent_id, []).append(finding)
    created: list[RiskDetection] = []
    refreshed = remediated = 0
    agent_ids = sorted(by_agent)
    size = settings.JOB_BATCH_SIZE
    for start in range(0, len(agent_ids), size):
        batch_ids = agent_ids[start:start + size]
        with transaction.atomic():
            agents = {a.pk: a for a in Agent.objects.select_for_update(of=("self",)).select_related("workspace")
                      .filter(pk__in=batch_ids).order_by("pk")}
            batch = [f for agent_id in batch_ids for f in by_agent[agent_id]]
            taken = set(RiskDetection.objects.filter(agent_id__in=batch_ids, kind__in={f.kind for f in batch},
                                                     key__in={f.key[:200] for f in batch})
                        .values_list("agent_id", "kind", "key"))
            now = timezone.now()
            fresh, keys = [], set()
            for f in batch:
                identity = (f.agent_id, f.kind, f.key[:200])
                if identity in taken or identity in keys:
                    continue
                keys.add(identity)
                fresh.append(RiskDetection(agent_id=f.agent_id, kind=f.kind, level=f.level, key=f.key[:200],
                                           detail=f.detail[:300], detected_at=now))
            if not fresh:
                continue
            made = RiskDetection.objects.bulk_create(fresh)
            if any(d.pk is None for d in made):  # backends that return no ids from bulk inserts
                made = list(RiskDetection.objects.filter(agent_id__in=batch_ids, detected_at=now))
            audit.record_many(actor=None, changes=[
                audit.Change("risk.detect", agents[d.agent_id], agents[d.agent_id].workspace,
                             after={"detection_id": d.pk, "kind": d.kind, "level": d.level, "detail": d.detail})
                for d in made])
            for agent_id in sorted({d.agent_id for d in made}):
                agent = agents[agent_id]
                was_active = agent.status == AgentStatus.ACTIVE
                refresh_level(agent)
                refreshed += 1
                remediated += was_active and agent.status == AgentStatus.DISABLED
            created += made
    return created, refreshed, remediated


def _remediate_outstanding() -> int:
    """With remediation on, an active agent already at or above the threshold (say, the policy was just turned
    on) is remediated too. One query when there is none."""
    policy = remediation_policy()
    if not policy.enabled:
        return 0
    levels = [level for level, order in RISK_ORDER.items() if order >= RISK_ORDER[policy.min_level]]
    done = 0
    for agent in Agent.objects.filter(status=AgentStatus.ACTIVE, risk_level__in=levels).order_by("pk"):
        with transaction.atomic():
            agent = Agent.objects.select_for_update().get(pk=agent.pk)
            if agent.status == AgentStatus.ACTIVE and agent.risk_level in levels:
                remediate(agent, agent.risk_level)
                done += 1
    return done


@jobs.register("evaluate_risk", "Raise risk detections from the sign-in log (new scope, request bursts, use "
                                "while orphaned), refresh agents' risk levels and remediate automatically.")
def evaluate_risk() -> dict:
    """R21: detections → risk levels → automatic remediation. A bounded number of queries for the window's
    sign-ins (aggregated in the database), then a few per agent with a new detection. Safe to run twice."""
    since = evaluation_start(timezone.now())
    findings = _new_scopes(since) + _bursts(since) + _orphaned_use(since)
    created, refreshed, remediated = _record_findings(findings)
    kinds = [d.kind for d in created]
    return {
        "sign_ins": SignIn.objects.filter(at__gte=since).count(),
        DetectionKind.NEW_SCOPE.value: kinds.count(DetectionKind.NEW_SCOPE),
        DetectionKind.REQUEST_BURST.value: kinds.count(DetectionKind.REQUEST_BURST),
        DetectionKind.ORPHANED_USE.value: kinds.count(DetectionKind.ORPHANED_USE),
        "agents_refreshed": refreshed,
        "remediated": remediated + _remediate_outstanding(),
    }


def status_note(agent: Agent) -> tuple[str, str] | None:
    """The agent's page says when it is at risk and links to its detections (no query for an agent at none)."""
    if not agent.risk_level or agent.risk_level == RiskLevel.NONE:
        return None
    count = RiskDetection.objects.filter(agent=agent, status__in=COUNTING).count()
    return (f"{RiskLevel(agent.risk_level).label} risk: {count} open detection{'s' if count != 1 else ''}.",
            reverse("risk-agent", args=[agent.pk]))
