"""Risk for agents (R21): detections roll up to the agent's risk level; a policy can remediate automatically.

``record_detection`` is the one way a detection is raised (by the token endpoint at request time, the
``evaluate_risk`` job, or an administrator confirming a compromise). The agent's ``risk_level`` is the highest
level among its open (or confirmed-compromised) detections. When the remediation policy is on and the level
reaches its threshold, the agent is disabled by the system and its tokens are revoked, in the same transaction.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import registry
from agents.choices import AgentStatus
from agents.models import Agent
from governance import tokens
from governance.choices import DetectionStatus, RiskLevel
from governance.conditional_access import RISK_ORDER
from governance.models import RiskDetection, RiskRemediationPolicy
from portal import audit

COUNTING = (DetectionStatus.OPEN, DetectionStatus.CONFIRMED_COMPROMISED)


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


@transaction.atomic
def record_detection(*, agent: Agent, kind: str, level: str, key: str = "", detail: str = "",
                     actor=None) -> RiskDetection | None:
    """Raise a detection unless the same (agent, kind, key) exists; audited; refreshes the agent's level."""
    try:
        with transaction.atomic():
            detection = RiskDetection.objects.create(agent=agent, kind=kind, level=level, key=key[:200],
                                                     detail=detail[:300], detected_at=timezone.now())
    except IntegrityError:
        return None
    audit.record(actor=actor, action="risk.detect", target=agent, workspace=agent.workspace,
                 after={"detection_id": detection.pk, "kind": kind, "level": level, "detail": detection.detail})
    refresh_level(agent)
    return detection
