"""Who reads a policy's replay, and over which agents (docs/policy-replay.md, "Who sees a replay")."""

from __future__ import annotations

from agents import policy as agent_policy
from agents.models import Agent
from governance.conditional_access import services as conditional_access
from portal import rbac


def can_replay(user) -> bool:
    """Whoever reads the policies reads their replay: conditional-access administrators, audit readers and
    workspace owners."""
    return conditional_access.can_manage_policies(user) or rbac.can_view_audit(user)


def replay_agent_ids(user):
    """The agents whose sign-ins a user's replay counts: every agent for conditional-access administrators and
    organisation-wide readers (None), else the agents visible to the user (a workspace owner's), as a queryset of
    ids."""
    if conditional_access.can_manage_policies(user) or rbac.can_read_all_audit(user):
        return None
    return agent_policy.agents_visible_to(user).values("pk")


def app_agent_ids(agents_in_reach) -> object:
    """The agents an app-only token's replay counts: its workspace's (or every agent with ``Portal.Read.All``)."""
    return Agent.objects.filter(pk__in=agents_in_reach.values("pk")).values("pk")
