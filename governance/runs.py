"""Starting a run (groundwork of the sessions-and-runs issue): a run is authorised exactly like a token request.

``authorise_run`` is the decision point for run starts: the agent must be able to act now (its status, expiry and,
for a user-account agent, its user — R1), its scopes are its effective permissions (automatic ∪ active packages,
never privileged) — bounded by its user's rights for a user-account agent, and by the starter's rights when a person
runs a user-scoped agent (a delegated run, R13) — and conditional access is evaluated with the same function as at
token issuance (R20: block wins, report-only only records). ``run_start`` records the run, queued or refused with
the reason, with one audit event. Executing runs (workers, outputs, built-in agents) is still to come.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentScope, IdentityType, RunStatus
from agents.models import Agent, Run, Session
from governance import conditional_access, tokens
from portal import audit
from portal.models import User


@dataclass(frozen=True)
class RunDecision:
    allowed: bool
    scopes: frozenset[str] = frozenset()
    reason: str = ""
    policies: list[dict] = field(default_factory=list)
    delegated_for: User | None = None


def authorise_run(agent: Agent, started_by: User | None, *, now: datetime | None = None,
                  ip: str | None = None) -> RunDecision:
    """May this agent run now, started by this person (None: its schedule), and with which scopes?"""
    now = now or timezone.now()
    why = tokens.refusal(agent, now)
    if why:
        return RunDecision(False, reason=why)
    held = tokens.effective_scopes(agent, now)
    if agent.identity_type == IdentityType.USER_ACCOUNT:
        held = held.narrowed(tokens.user_rights(agent.run_as_user))
    delegated_for = None
    if started_by is not None and agent.scope == AgentScope.USER:
        held = held.narrowed(tokens.user_rights(started_by))  # a delegated run: never more than the starter's
        delegated_for = started_by
    evaluation = conditional_access.evaluate(
        conditional_access.agent_facts(agent),
        conditional_access.AccessContext(ip=ip, at=now, scopes=held.scopes))
    verdicts = evaluation.applied()
    if not evaluation.allowed:
        return RunDecision(False, reason=f"blocked by conditional access: {evaluation.blocked_by}", policies=verdicts)
    return RunDecision(True, scopes=held.scopes, policies=verdicts, delegated_for=delegated_for)


def _missing_inputs(agent: Agent, inputs: dict) -> list[str]:
    declared = agent.blueprint.inputs or []
    return [item.get("Name", "") for item in declared
            if item.get("Required") and not str(inputs.get(item.get("Name", ""), "")).strip()]


@transaction.atomic
def run_start(*, actor: User, session: Session, inputs: dict | None = None, ip: str | None = None) -> Run:
    """Record a run of the session's agent: queued when authorised, refused (with the reason) when not."""
    agent = Agent.objects.select_related("blueprint", "run_as_user", "workspace").get(pk=session.agent_id)
    if not agent_policy.can_use_agent(actor, agent):
        raise PermissionDenied("You may not run this agent.")
    inputs = dict(inputs or {})
    missing = _missing_inputs(agent, inputs)
    if missing:
        raise ValidationError({"inputs": f"Fill in the required inputs: {', '.join(missing)}."})
    decision = authorise_run(agent, actor, ip=ip)
    run = Run.objects.create(
        session=session, agent=agent, started_by=actor, inputs=inputs, scopes=sorted(decision.scopes),
        delegated_for=decision.delegated_for, policies=decision.policies,
        status=RunStatus.QUEUED if decision.allowed else RunStatus.REFUSED, refused_reason=decision.reason[:300])
    audit.record(actor=actor, action="run.start" if decision.allowed else "run.refuse", target=run,
                 workspace=agent.workspace, after={"agent": agent.name, "status": run.status,
                                                   "scopes": run.scopes, "reason": run.refused_reason})
    return run


def session_open(*, actor: User, agent: Agent, title: str = "") -> Session:
    """Open a session with an agent the person may use (R10)."""
    if not agent_policy.can_use_agent(actor, agent):
        raise PermissionDenied("You may not use this agent.")
    with transaction.atomic():
        session = Session.objects.create(agent=agent, opened_by=actor, title=title.strip()[:200])
        audit.record(actor=actor, action="session.open", target=session, workspace=agent.workspace,
                     after={"agent": agent.name})
    return session

