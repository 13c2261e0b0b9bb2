"""Who may do what to an agent (R10), on top of ``portal.rbac``'s workspace roles.

Agent owners and sponsors are django-guardian object permissions on the agent (direct-foreign-key table).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from agents.choices import AgentScope
from agents.models import Agent, AgentUserObjectPermission
from portal import rbac

OWN_AGENT = "own_agent"
SPONSOR_AGENT = "sponsor_agent"


def _agent_perms(user, agent: Agent) -> set[str]:
    """The user's per-agent permission codenames (cached per user object and agent)."""
    cache = user.__dict__.setdefault("_portal_agent_perms", {})
    if agent.pk not in cache:
        cache[agent.pk] = set(
            AgentUserObjectPermission.objects.filter(user=user, content_object=agent)
            .values_list("permission__codename", flat=True)
        )
    return cache[agent.pk]


def is_agent_owner(user, agent: Agent) -> bool:
    return user.is_authenticated and user.is_active and OWN_AGENT in _agent_perms(user, agent)


def is_agent_sponsor(user, agent: Agent) -> bool:
    return user.is_authenticated and user.is_active and SPONSOR_AGENT in _agent_perms(user, agent)


def can_create_agent(user, workspace, scope: str) -> bool:
    """Owners set up at workspace or user scope; contributors at user scope only (R10)."""
    perm = rbac.SETUP_AGENTS if scope == AgentScope.WORKSPACE else rbac.PUBLISH_USER_SCOPE
    return rbac.has_workspace_perm(user, workspace, perm)


def can_view_agent(user, agent: Agent) -> bool:
    workspace = agent.workspace
    if rbac.has_workspace_perm(user, workspace, rbac.MANAGE_MEMBERS):
        return True
    if agent.scope == AgentScope.WORKSPACE and rbac.has_workspace_perm(user, workspace, rbac.VIEW_WORKSPACE):
        return True
    if agent.created_by_id == getattr(user, "pk", None) and user.is_active:
        return True
    return is_agent_owner(user, agent) or is_agent_sponsor(user, agent)


def can_manage_agent(user, agent: Agent) -> bool:
    """Settings, credentials, owners and sponsors, retirement: the workspace's owners and the agent's owners.

    A user-scoped agent is also managed by its creator (contributors build and publish at user scope, R10).
    """
    if rbac.has_workspace_perm(user, agent.workspace, rbac.MANAGE_MEMBERS) or is_agent_owner(user, agent):
        return True
    return agent.scope == AgentScope.USER and agent.created_by_id == getattr(user, "pk", None) and user.is_active


def can_toggle_agent(user, agent: Agent) -> bool:
    """Disable and enable: sponsors as well as owners."""
    return can_manage_agent(user, agent) or is_agent_sponsor(user, agent)


def agents_visible_to(user) -> QuerySet[Agent]:
    """Agents a user may see, as one query: owners see their workspaces' agents; members see workspace-scoped
    ones and their own user-scoped ones; anyone sees the agents they own or sponsor (R10). Attribute Assignment
    Administrators see every agent: they assign protected attributes tenant-wide (R20)."""
    if not user.is_authenticated or not user.is_active:
        return Agent.objects.none()
    if rbac.is_inherited_owner(user) or rbac.can_assign_protected_attributes(user):
        return Agent.objects.all()
    owned = rbac.workspaces_owned_by(user).values("pk")
    member = rbac.workspaces_visible_to(user).values("pk")
    direct = AgentUserObjectPermission.objects.filter(user=user).values("content_object_id")
    return Agent.objects.filter(
        Q(workspace__in=owned)
        | Q(workspace__in=member, scope=AgentScope.WORKSPACE)
        | Q(workspace__in=member, created_by=user)
        | Q(pk__in=direct)
    )


def agents_named(user, names: str) -> list[Agent]:
    """The agents a form names (separated by ``;`` or ``,``, as the pickers write them), in the order named, among
    those the user sees; a name the user cannot see is refused by name."""
    wanted = [n.strip() for n in (names or "").replace(";", ",").split(",") if n.strip()]
    found = {a.name: a for a in agents_visible_to(user).filter(name__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValidationError(f"No agent you can see is called {', '.join(missing)}.")
    return [found[n] for n in wanted]


def can_use_agent(user, agent: Agent) -> bool:
    """Who may open a session with an agent and run it: any member for a workspace-scoped agent; for a user-scoped
    one its creator and its owners (R10)."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if agent.scope == AgentScope.WORKSPACE:
        return rbac.has_workspace_perm(user, agent.workspace, rbac.VIEW_WORKSPACE) or is_agent_owner(user, agent)
    return agent.created_by_id == user.pk or can_manage_agent(user, agent)


def agents_usable_by(user) -> QuerySet[Agent]:
    """``can_use_agent`` as one query, among the agents the user sees: workspace-scoped agents of the user's
    workspaces and the agents they own; user-scoped ones they created, or that belong to a workspace they own
    (R10)."""
    visible = agents_visible_to(user)
    if not getattr(user, "is_authenticated", False) or not user.is_active or rbac.is_inherited_owner(user):
        return visible
    member = rbac.workspaces_visible_to(user).values("pk")
    owned = rbac.workspaces_owned_by(user).values("pk")
    own = AgentUserObjectPermission.objects.filter(user=user, permission__codename=OWN_AGENT) \
        .values("content_object_id")
    return visible.filter(Q(scope=AgentScope.WORKSPACE, workspace__in=member) | Q(pk__in=own)
                          | Q(scope=AgentScope.USER, created_by=user) | Q(scope=AgentScope.USER, workspace__in=owned))


# --- sessions and runs (R10: contributors run agents and use outputs; owners see everyone's) -----------------------
def agents_managed_by(user) -> QuerySet[Agent]:
    """Agents whose sessions the user may see as an owner (``can_manage_agent``), as one subquery."""
    if rbac.is_inherited_owner(user):
        return Agent.objects.all()
    owned = rbac.workspaces_owned_by(user).values("pk")
    direct = AgentUserObjectPermission.objects.filter(user=user, permission__codename=OWN_AGENT) \
        .values("content_object_id")
    return Agent.objects.filter(Q(workspace__in=owned) | Q(pk__in=direct)
                                | Q(scope=AgentScope.USER, created_by=user))


