"""Who may see sessions and runs, and cancel runs."""

from __future__ import annotations

from django.db.models import Q

from agents import policy as agent_policy
from governance.runs.models import Run, Session


def can_view_session(user, session) -> bool:
    """A session is its opener's; the owners of the agent (workspace owners, inherited owners, agent owners) see
    everyone's."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return session.opened_by_id == user.pk or agent_policy.can_manage_agent(user, session.agent)


def can_view_run(user, run) -> bool:
    """A run in a session follows its session; a scheduled run is the agent's own work: whoever sees the agent."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if run.session_id is not None:
        return run.session.opened_by_id == user.pk or agent_policy.can_manage_agent(user, run.agent)
    return agent_policy.can_view_agent(user, run.agent)


def sessions_visible_to(user):
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Session.objects.none()
    return Session.objects.filter(Q(opened_by=user) | Q(agent__in=agent_policy.agents_managed_by(user).values("pk")))


def runs_visible_to(user):
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return Run.objects.none()
    return Run.objects.filter(
        Q(session__opened_by=user) | Q(agent__in=agent_policy.agents_managed_by(user).values("pk"))
        | Q(session__isnull=True, agent__in=agent_policy.agents_visible_to(user).values("pk")))


def can_cancel_run(user, run) -> bool:
    """Whoever started the run, and the agent's owners."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    started_it = run.started_by_id is not None and run.started_by_id == user.pk
    return started_it or agent_policy.can_manage_agent(user, run.agent)
