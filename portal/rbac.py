"""The one place that answers "may this user do this here" and "who are the effective owners" (R10–R12).

Platform roles are per workspace: each workspace has an owner group and a contributor group carrying
django-guardian object permissions on that workspace (authentik's pattern: roles are groups holding
object permissions). Holders of the directory roles in ``INHERITED_OWNER_ROLES`` are effective owners of
every workspace without a membership row (R11). Platform roles never grant data access (R13): nothing here
hands out a ``portal.Permission``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from guardian.core import ObjectPermissionChecker
from guardian.shortcuts import assign_perm, get_objects_for_user

from portal.choices import UserKind, WorkspaceRole
from portal.models import DirectoryRoleAssignment, User, Workspace, WorkspaceMembership

# Directory role keys (seeded by migration 0002).
GLOBAL_ADMINISTRATOR = "global-administrator"
PRIVILEGED_ROLE_ADMINISTRATOR = "privileged-role-administrator"
SECURITY_ADMINISTRATOR = "security-administrator"
COMPLIANCE_ADMINISTRATOR = "compliance-administrator"
SECURITY_OPERATOR = "security-operator"
SECURITY_READER = "security-reader"
GLOBAL_READER = "global-reader"
ATTRIBUTE_ASSIGNMENT_ADMINISTRATOR = "attribute-assignment-administrator"  # seeded by agents migration 0007

INHERITED_OWNER_ROLES = frozenset({GLOBAL_ADMINISTRATOR, SECURITY_ADMINISTRATOR, COMPLIANCE_ADMINISTRATOR})
DIRECTORY_MANAGER_ROLES = frozenset({GLOBAL_ADMINISTRATOR, PRIVILEGED_ROLE_ADMINISTRATOR})
AUDIT_READER_ROLES = INHERITED_OWNER_ROLES | {SECURITY_READER, GLOBAL_READER}
PROTECTED_ATTRIBUTE_ASSIGNER_ROLES = frozenset({GLOBAL_ADMINISTRATOR, ATTRIBUTE_ASSIGNMENT_ADMINISTRATOR})

# Workspace actions: guardian permission names on ``Workspace`` objects.
VIEW_WORKSPACE = "portal.view_workspace"
CHANGE_WORKSPACE = "portal.change_workspace"
MANAGE_MEMBERS = "portal.manage_members"
SETUP_AGENTS = "portal.setup_agents"
RUN_AGENTS = "portal.run_agents"
PUBLISH_USER_SCOPE = "portal.publish_user_scope"
PUBLISH_WORKSPACE_SCOPE = "portal.publish_workspace_scope"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    WorkspaceRole.OWNER: frozenset(
        {VIEW_WORKSPACE, CHANGE_WORKSPACE, MANAGE_MEMBERS, SETUP_AGENTS, RUN_AGENTS, PUBLISH_USER_SCOPE,
         PUBLISH_WORKSPACE_SCOPE}
    ),
    WorkspaceRole.CONTRIBUTOR: frozenset({VIEW_WORKSPACE, RUN_AGENTS, PUBLISH_USER_SCOPE}),
}

MIN_EFFECTIVE_OWNERS = 2


class OwnerFloorError(ValidationError):
    """A change would leave a workspace with fewer than two effective owners (R12)."""

    def __init__(self, workspaces: Iterable[Workspace]):
        self.workspaces = list(workspaces)
        names = ", ".join(w.name for w in self.workspaces)
        super().__init__(
            f"Refused: {names} would be left with fewer than {MIN_EFFECTIVE_OWNERS} effective owners. "
            f"Add or promote another owner first.",
            code="owner_floor",
        )


def require(allowed: bool, message: str = "You do not have permission to do that.") -> None:
    """Raise PermissionDenied (HTTP 403) unless ``allowed``."""
    if not allowed:
        raise PermissionDenied(message)


# --- directory roles ----------------------------------------------------------------------------------


def role_keys(user: User | AnonymousUser) -> frozenset[str]:
    """The directory roles an active user holds, cached on the user object for the request."""
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, "_portal_role_keys", None)
    if cached is None:
        cached = frozenset(
            DirectoryRoleAssignment.objects.filter(user=user).values_list("role__key", flat=True)
        )
        user._portal_role_keys = cached
    return cached


def forget_cached_roles(user: User) -> None:
    """Drop what this module cached on the user object (call after a change, or after taking a lock)."""
    for attr in ("_portal_role_keys", "_portal_perm_checker", "_portal_owns_any"):
        user.__dict__.pop(attr, None)


def is_global_administrator(user) -> bool:
    """A person (never an agent user) holding Global Administrator: the approver of partner agents."""
    return GLOBAL_ADMINISTRATOR in role_keys(user) and getattr(user, "kind", None) == UserKind.HUMAN


def global_administrators() -> QuerySet[User]:
    return User.objects.filter(role_assignments__role__key=GLOBAL_ADMINISTRATOR, is_active=True,
                               kind=UserKind.HUMAN).distinct()


def is_inherited_owner(user) -> bool:
    """R11: Global, Security and Compliance Administrators own every workspace."""
    return bool(role_keys(user) & INHERITED_OWNER_ROLES) and getattr(user, "kind", None) == UserKind.HUMAN


def can_manage_directory(user) -> bool:
    """Users and role assignments are managed only by Global and Privileged Role Administrators."""
    return bool(role_keys(user) & DIRECTORY_MANAGER_ROLES)


def can_assign_protected_attributes(user) -> bool:
    """R20, protected attributes: only Global and Attribute Assignment Administrators (people, never agent users)
    assign, change and remove the custom security attributes of a protected attribute set."""
    return bool(role_keys(user) & PROTECTED_ATTRIBUTE_ASSIGNER_ROLES) and getattr(user, "kind", None) == UserKind.HUMAN


def can_manage_attribute_sets(user) -> bool:
    """Attribute sets (which keys are protected) are managed by Global Administrators."""
    return is_global_administrator(user)


def can_create_workspace(user) -> bool:
    return can_manage_directory(user)


def can_read_all_audit(user) -> bool:
    return bool(role_keys(user) & AUDIT_READER_ROLES)


# --- workspaces ---------------------------------------------------------------------------------------


def grant_role_permissions(workspace: Workspace) -> None:
    """Give the workspace's owner and contributor groups their object permissions (called once at creation)."""
    for role, group in ((WorkspaceRole.OWNER, workspace.owner_group),
                        (WorkspaceRole.CONTRIBUTOR, workspace.contributor_group)):
        for perm in sorted(ROLE_PERMISSIONS[role]):
            assign_perm(perm, group, workspace)


def group_for_role(workspace: Workspace, role: str):
    return workspace.owner_group if role == WorkspaceRole.OWNER else workspace.contributor_group


def workspaces_visible_to(user) -> QuerySet[Workspace]:
    """Every workspace for inherited owners; otherwise those the user's groups may view (one query)."""
    if not user.is_authenticated or not user.is_active:
        return Workspace.objects.none()
    if is_inherited_owner(user):
        return Workspace.objects.all()
    return get_objects_for_user(user, VIEW_WORKSPACE, klass=Workspace, accept_global_perms=False)


def workspaces_owned_by(user) -> QuerySet[Workspace]:
    if not user.is_authenticated or not user.is_active:
        return Workspace.objects.none()
    if is_inherited_owner(user):
        return Workspace.objects.all()
    return get_objects_for_user(user, MANAGE_MEMBERS, klass=Workspace, accept_global_perms=False)


def has_workspace_perm(user, workspace: Workspace, perm: str) -> bool:
    """May ``user`` do ``perm`` in ``workspace``? Inherited owners hold every owner permission."""
    if not user.is_authenticated or not user.is_active:
        return False
    if is_inherited_owner(user):
        return perm in ROLE_PERMISSIONS[WorkspaceRole.OWNER]
    checker = getattr(user, "_portal_perm_checker", None)
    if checker is None:  # one guardian checker per user object: its per-object cache serves the whole request
        checker = user._portal_perm_checker = ObjectPermissionChecker(user)
    return checker.has_perm(perm.split(".", 1)[1], workspace)


def workspace_role(user, workspace: Workspace) -> str | None:
    """The user's effective platform role: ``owner`` (explicit or inherited), ``contributor`` or None."""
    if has_workspace_perm(user, workspace, MANAGE_MEMBERS):
        return WorkspaceRole.OWNER
    if has_workspace_perm(user, workspace, VIEW_WORKSPACE):
        return WorkspaceRole.CONTRIBUTOR
    return None


def owns_any_workspace(user) -> bool:
    """Inherited owners and explicit owners of at least one workspace (cached on the user object)."""
    if is_inherited_owner(user):
        return True
    owns_any = getattr(user, "_portal_owns_any", None)
    if owns_any is None:
        owns_any = user._portal_owns_any = workspaces_owned_by(user).exists()
    return owns_any


def can_view_jobs(user) -> bool:
    """The Jobs page is for owners: inherited ones and explicit owners of any workspace."""
    return owns_any_workspace(user)


def can_view_audit(user) -> bool:
    """Audit readers see every event; owners see their workspaces' events."""
    return can_read_all_audit(user) or owns_any_workspace(user)


# --- effective owners (R11, R12) ------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveOwner:
    user: User
    sources: tuple[str, ...]  # "explicit" and/or directory role names

    @property
    def inherited(self) -> bool:
        return any(s != "explicit" for s in self.sources)


def inherited_owner_assignments() -> QuerySet[DirectoryRoleAssignment]:
    return DirectoryRoleAssignment.objects.filter(
        role__key__in=INHERITED_OWNER_ROLES, user__is_active=True, user__kind=UserKind.HUMAN
    )


def effective_owners(workspace: Workspace) -> list[EffectiveOwner]:
    """Explicit owners plus inherited ones, each with where their ownership comes from (two queries)."""
    sources: dict[int, list[str]] = defaultdict(list)
    users: dict[int, User] = {}
    explicit = WorkspaceMembership.objects.filter(
        workspace=workspace, role=WorkspaceRole.OWNER, user__is_active=True
    ).select_related("user")
    for membership in explicit:
        users[membership.user_id] = membership.user
        sources[membership.user_id].append("explicit")
    for assignment in inherited_owner_assignments().select_related("user", "role"):
        users[assignment.user_id] = assignment.user
        sources[assignment.user_id].append(assignment.role.name)
    return sorted(
        (EffectiveOwner(users[uid], tuple(srcs)) for uid, srcs in sources.items()),
        key=lambda o: o.user.username,
    )


def effective_owner_counts(workspace_ids: Iterable[int]) -> dict[int, int]:
    """Number of distinct active effective owners per workspace, in two queries whatever the count."""
    ids = list(workspace_ids)
    inherited = set(inherited_owner_assignments().values_list("user_id", flat=True))
    explicit: dict[int, set[int]] = {wid: set() for wid in ids}
    rows = WorkspaceMembership.objects.filter(
        workspace_id__in=ids, role=WorkspaceRole.OWNER, user__is_active=True
    ).values_list("workspace_id", "user_id")
    for workspace_id, user_id in rows:
        explicit[workspace_id].add(user_id)
    return {wid: len(explicit[wid] | inherited) for wid in ids}


def lock_workspaces(workspace_ids: Iterable[int] | None = None) -> list[Workspace]:
    """Row-lock workspaces in primary-key order (no deadlocks); ``None`` locks all of them.

    Every change that can reduce a workspace's owners takes these locks first, so two such changes racing on
    one workspace run one after the other and the second sees the first's result (R12).
    """
    qs = Workspace.objects.select_for_update().order_by("pk")
    if workspace_ids is not None:
        qs = qs.filter(pk__in=list(workspace_ids))
    return list(qs)


def ensure_owner_floor(workspaces: list[Workspace]) -> None:
    """Raise ``OwnerFloorError`` if any of these (locked) workspaces now has fewer than two effective owners."""
    counts = effective_owner_counts(w.pk for w in workspaces)
    short = [w for w in workspaces if counts[w.pk] < MIN_EFFECTIVE_OWNERS]
    if short:
        raise OwnerFloorError(short)
