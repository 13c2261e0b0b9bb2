"""Directory services: users and directory-role assignments (R4, R11, R12).

Only Global Administrators and Privileged Role Administrators manage the directory. A deactivation or a role
removal that would leave any workspace with fewer than two effective owners is refused (R12).
"""

from __future__ import annotations

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from portal import audit, rbac
from portal.choices import UserKind, WorkspaceRole
from portal.models import DirectoryRole, DirectoryRoleAssignment, User, WorkspaceMembership
from portal.snapshots import snapshot

USER_FIELDS = ("username", "display_name", "email", "manager", "kind", "is_active")


def _require_directory_manager(actor: User | None) -> None:
    if actor is not None:
        rbac.require(rbac.can_manage_directory(actor),
                     "Only Global Administrators and Privileged Role Administrators manage the directory.")


def _check_manager(user: User | None, manager: User | None) -> None:
    if manager is None:
        return
    if manager.kind != UserKind.HUMAN:
        raise ValidationError("A manager must be a person, not an agent user.")
    seen = set() if user is None else {user.pk}
    cursor: User | None = manager
    while cursor is not None:  # refuse management cycles (a is b's manager and b is a's)
        if cursor.pk in seen:
            raise ValidationError("That manager would create a reporting cycle.")
        seen.add(cursor.pk)
        cursor = cursor.manager


@transaction.atomic
def user_create(*, actor: User | None, username: str, email: str = "", display_name: str = "",
                manager: User | None = None, password: str | None = None,
                kind: str = UserKind.HUMAN) -> User:
    """Create a directory user. Agent users get no usable password (R6)."""
    _require_directory_manager(actor)
    if User.objects.filter(username__iexact=username).exists():
        raise ValidationError(f"The username '{username}' is taken.")
    _check_manager(None, manager)
    user = User(username=username, email=email, display_name=display_name, manager=manager, kind=kind)
    if password and kind == UserKind.HUMAN:
        validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean()
    user.save()
    audit.record(actor=actor, action="directory.user_create", target=user, after=snapshot(user, USER_FIELDS))
    return user


@transaction.atomic
def user_set_password(*, actor: User | None, user: User, password: str, validate: bool = True) -> User:
    """Set a person's password (never recorded: the audit event says only that it changed)."""
    _require_directory_manager(actor)
    if user.kind != UserKind.HUMAN:
        raise ValidationError("Agent users never sign in interactively and have no password.")
    if validate:
        validate_password(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    audit.record(actor=actor, action="directory.user_password_set", target=user)
    return user


@transaction.atomic
def user_update(*, actor: User | None, user: User, display_name: str, email: str,
                manager: User | None) -> User:
    _require_directory_manager(actor)
    _check_manager(user, manager)
    before = snapshot(user, USER_FIELDS)
    user.display_name, user.email, user.manager = display_name, email, manager
    # None of these three fields is unique, so the uniqueness queries (username, OAuth subject) would re-check
    # values this change leaves as they are.
    user.full_clean(validate_unique=False)
    user.save(update_fields=["display_name", "email", "manager"])
    audit.record(actor=actor, action="directory.user_update", target=user, before=before,
                 after=snapshot(user, USER_FIELDS))
    return user


def _lock_workspaces_owned_by(user: User):
    """Lock every workspace this user is an effective owner of (all of them for inherited owners)."""
    if rbac.inherited_owner_assignments().filter(user=user).exists():
        return rbac.lock_workspaces(None)
    owned = WorkspaceMembership.objects.filter(user=user, role=WorkspaceRole.OWNER).values_list(
        "workspace_id", flat=True
    )
    return rbac.lock_workspaces(owned)


@transaction.atomic
def user_deactivate(*, actor: User | None, user: User) -> User:
    """Disable sign-in. Refused if it would leave a workspace with fewer than two effective owners (R12)."""
    _require_directory_manager(actor)
    if actor is not None and actor.pk == user.pk:
        raise ValidationError("You cannot deactivate your own account.")
    locked = _lock_workspaces_owned_by(user)
    user = User.objects.select_for_update().get(pk=user.pk)
    if not user.is_active:
        return user
    before = snapshot(user, USER_FIELDS)
    user.is_active = False
    user.save(update_fields=["is_active"])
    rbac.ensure_owner_floor(locked)
    audit.record(actor=actor, action="directory.user_deactivate", target=user, before=before,
                 after=snapshot(user, USER_FIELDS))
    return user


@transaction.atomic
def user_reactivate(*, actor: User | None, user: User) -> User:
    _require_directory_manager(actor)
    user = User.objects.select_for_update().get(pk=user.pk)
    if user.is_active:
        return user
    before = snapshot(user, USER_FIELDS)
    user.is_active = True
    user.save(update_fields=["is_active"])
    audit.record(actor=actor, action="directory.user_reactivate", target=user, before=before,
                 after=snapshot(user, USER_FIELDS))
    return user


@transaction.atomic
def role_assign(*, actor: User | None, user: User, role: DirectoryRole) -> DirectoryRoleAssignment:
    """Give a user a directory role. Privileged roles never go to agent users (R4)."""
    _require_directory_manager(actor)
    if user.kind != UserKind.HUMAN and role.privileged:
        raise ValidationError(f"{role.name} is privileged and can never be held by an agent.")
    if not user.is_active:
        raise ValidationError(f"{user.username} is deactivated.")
    if DirectoryRoleAssignment.objects.filter(user=user, role=role).exists():
        raise ValidationError(f"{user.username} already holds {role.name}.")
    assignment = DirectoryRoleAssignment.objects.create(user=user, role=role, assigned_by=actor)
    rbac.forget_cached_roles(user)
    audit.record(actor=actor, action="directory.role_assign", target=assignment,
                 after={"user_id": user.pk, "role": role.key})
    return assignment


@transaction.atomic
def role_unassign(*, actor: User | None, assignment: DirectoryRoleAssignment) -> None:
    """Remove a directory role; losing an inherited owner below the two-owner floor is refused (R12)."""
    _require_directory_manager(actor)
    role = assignment.role
    locked = rbac.lock_workspaces(None) if role.key in rbac.INHERITED_OWNER_ROLES else []
    assignment = DirectoryRoleAssignment.objects.select_related("user", "role").get(pk=assignment.pk)
    before = {"user_id": assignment.user_id, "role": role.key}
    audit.record(actor=actor, action="directory.role_unassign", target=assignment, before=before)
    assignment.delete()
    rbac.forget_cached_roles(assignment.user)
    if locked:
        rbac.ensure_owner_floor(locked)
