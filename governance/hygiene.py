"""Agent hygiene findings (groundwork for the built-in *Agent Hygiene Agent* of the sessions-and-runs issue).

Deterministic, no language model: for the active agents of some workspaces it finds credentials expired or ending
within 30 days, permissions held but not used in the sign-in log for 30 days, agents with a single sponsor, agents
unused for 60 days and orphaned agents, each with a level and a suggested action, ranked by risk. A fixed number of
queries whatever the number of agents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Max
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentStatus
from agents.models import AgentUserObjectPermission, Credential, PermissionGrant
from governance.choices import AssignmentStatus, RiskLevel, SignInOutcome
from governance.conditional_access import RISK_ORDER
from governance.models import Assignment, SignIn

EXPIRING_DAYS = 30
UNUSED_PERMISSION_DAYS = 30
UNUSED_AGENT_DAYS = 60


@dataclass(frozen=True)
class Finding:
    agent_id: int
    agent: str
    kind: str
    level: str
    detail: str
    action: str  # rotate, remove_grant, add_sponsor, retire

    def as_dict(self) -> dict:
        return {"agent_id": self.agent_id, "agent": self.agent, "kind": self.kind, "level": self.level,
                "detail": self.detail, "action": self.action}


def findings(agents, now: datetime | None = None) -> list[Finding]:
    """The hygiene findings for these agents (a queryset), highest risk first, then by agent and kind."""
    now = now or timezone.now()
    agents = list(agents.filter(status=AgentStatus.ACTIVE).order_by("name", "pk").only("id", "name", "orphaned_at",
                                                                                       "created_at"))
    ids = [a.pk for a in agents]
    found: list[Finding] = []

    for credential in (Credential.objects.filter(identity__agent_id__in=ids, revoked_at__isnull=True,
                                                 expires_at__lte=now + timedelta(days=EXPIRING_DAYS))
                       .select_related("identity__agent").order_by("expires_at")):
        agent = credential.identity.agent
        if credential.expires_at <= now:
            found.append(Finding(agent.pk, agent.name, "credential_expired", RiskLevel.MEDIUM,
                                 f"secret {credential.prefix}… expired on {credential.expires_at:%Y-%m-%d}", "rotate"))
        else:
            found.append(Finding(agent.pk, agent.name, "credential_expiring", RiskLevel.LOW,
                                 f"secret {credential.prefix}… expires on {credential.expires_at:%Y-%m-%d}", "rotate"))

    held: dict[int, set[str]] = {}
    for agent_id, name in PermissionGrant.objects.filter(identity__agent_id__in=ids, ended_at__isnull=True) \
            .values_list("identity__agent_id", "permission__name"):
        held.setdefault(agent_id, set()).add(name)
    for agent_id, name in Assignment.objects.filter(agent_id__in=ids, status=AssignmentStatus.ACTIVE,
                                                    expires_at__gt=now) \
            .values_list("agent_id", "package__permissions__name"):
        if name:
            held.setdefault(agent_id, set()).add(name)
    used: dict[int, set[str]] = {}
    successes = SignIn.objects.filter(agent_id__in=ids, outcome=SignInOutcome.SUCCESS)
    for agent_id, scopes in successes.filter(at__gte=now - timedelta(days=UNUSED_PERMISSION_DAYS)) \
            .values_list("agent_id", "granted_scopes").distinct():
        used.setdefault(agent_id, set()).update(scopes or [])
    last_used = dict(successes.values("agent_id").annotate(last=Max("at")).values_list("agent_id", "last"))
    sponsors = dict(AgentUserObjectPermission.objects.filter(
        content_object_id__in=ids, permission__codename=agent_policy.SPONSOR_AGENT, user__is_active=True)
        .values("content_object_id").annotate(n=Count("pk")).values_list("content_object_id", "n"))

    for agent in agents:
        if agent.orphaned_at is not None:
            found.append(Finding(agent.pk, agent.name, "orphaned", RiskLevel.HIGH,
                                 f"no active sponsor since {agent.orphaned_at:%Y-%m-%d}", "add_sponsor"))
        elif sponsors.get(agent.pk, 0) == 1:
            found.append(Finding(agent.pk, agent.name, "single_sponsor", RiskLevel.LOW,
                                 "one sponsor: nobody is accountable if they leave", "add_sponsor"))
        last = last_used.get(agent.pk)
        unused_since = now - timedelta(days=UNUSED_AGENT_DAYS)
        if (last is None and agent.created_at <= unused_since) or (last is not None and last <= unused_since):
            when = f"since {last:%Y-%m-%d}" if last else "ever"
            found.append(Finding(agent.pk, agent.name, "agent_unused", RiskLevel.MEDIUM,
                                 f"no token {when} (over {UNUSED_AGENT_DAYS} days)", "retire"))
            continue  # an unused agent's permissions are all unused: one finding says it
        for name in sorted(held.get(agent.pk, set()) - used.get(agent.pk, set())):
            found.append(Finding(agent.pk, agent.name, "permission_unused", RiskLevel.LOW,
                                 f"{name} not used in {UNUSED_PERMISSION_DAYS} days", "remove_grant"))
    return sorted(found, key=lambda f: (-RISK_ORDER[f.level], f.agent, f.kind, f.detail))

