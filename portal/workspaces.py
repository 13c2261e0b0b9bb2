"""Workspace and membership services (R10–R12). Every change is atomic, permission-checked and audited."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from portal import audit, rbac
from portal.choices import UserKind, WorkspaceRole
from portal.models import User, Workspace, WorkspaceMembership
from portal.snapshots import snapshot

MEMBERSHIP_FIELDS = ("user", "role")


def _check_member_candidate(user: User) -> None:
    if user.kind != UserKind.HUMAN:
        raise ValidationError(f"{user.username} is an agent user; platform roles are for people only.")
    if not user.is_active:
        raise ValidationError(f"{user.username} is deactivated and cannot be given a platform role.")


@transaction.atomic
def workspace_create(*, actor: User | None, name: str, slug: str = "", description: str = "",
                     owners: Sequence[User] = (), contributors: Sequence[User] = ()) -> Workspace:
    """Create a workspace with its owner and contributor groups; it must start with two effective owners (R12)."""
    if actor is not None:
        rbac.require(rbac.can_create_workspace(actor), "Only Global and Privileged Role Administrators "
                                                       "create workspaces.")
    slug = slugify(slug or name)
    if not slug:
        raise ValidationError("A workspace needs a name.")
    if Workspace.objects.filter(slug=slug).exists():
        raise ValidationError(f"A workspace with the short name '{slug}' already exists.")
    workspace = Workspace(
        slug=slug, name=name.strip(), description=description.strip(),
        owner_group=Group.objects.create(name=f"workspace:{slug}:owners"),
        contributor_group=Group.objects.create(name=f"workspace:{slug}:contributors"),
    )
    workspace.full_clean()
    workspace.save()
    rbac.grant_role_permissions(workspace)
    changes = [audit.Change("workspace.create", workspace, workspace,
                            after=snapshot(workspace, ("slug", "name", "description")))]
    for role, users in ((WorkspaceRole.OWNER, owners), (WorkspaceRole.CONTRIBUTOR, contributors)):
        for user in users:
            _check_member_candidate(user)
            membership = WorkspaceMembership.objects.create(workspace=workspace, user=user, role=role,
                                                            added_by=actor)
            rbac.group_for_role(workspace, role).user_set.add(user)
            changes.append(audit.Change("workspace.member_add", membership, workspace,
                                        after=snapshot(membership, MEMBERSHIP_FIELDS)))
    rbac.ensure_owner_floor([workspace])
    audit.record_many(actor=actor, changes=changes)
    return workspace


@transaction.atomic
def membership_add(*, actor: User | None, workspace: Workspace, user: User, role: str) -> WorkspaceMembership:
    """An owner gives a person a platform role in the workspace (R10)."""
    if actor is not None:
        rbac.require(rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS),
                     "Only owners of this workspace can add members.")
    if role not in WorkspaceRole.values:
        raise ValidationError(f"Unknown role '{role}'.")
    _check_member_candidate(user)
    existing = WorkspaceMembership.objects.filter(workspace=workspace, user=user).first()
    if existing is not None:
        raise ValidationError(
            f"{user.username} is already a {existing.get_role_display().lower()} of {workspace.name}."
        )
    membership = WorkspaceMembership.objects.create(workspace=workspace, user=user, role=role, added_by=actor)
    rbac.group_for_role(workspace, role).user_set.add(user)
    audit.record(actor=actor, action="workspace.member_add", target=membership, workspace=workspace,
                 after=snapshot(membership, MEMBERSHIP_FIELDS))
    return membership


def _lock_membership(workspace: Workspace, membership_id: int) -> tuple[Workspace, WorkspaceMembership]:
    """Lock the workspace row (serialising owner changes, R12), then re-read the membership."""
    locked = rbac.lock_workspaces([workspace.pk])
    if not locked:
        raise WorkspaceMembership.DoesNotExist
    membership = WorkspaceMembership.objects.select_related("user").get(pk=membership_id, workspace=locked[0])
    return locked[0], membership


@transaction.atomic
def membership_change_role(*, actor: User | None, membership: WorkspaceMembership, role: str) -> WorkspaceMembership:
    """Promote or demote a member; a demotion that leaves fewer than two effective owners is refused (R12)."""
    if role not in WorkspaceRole.values:
        raise ValidationError(f"Unknown role '{role}'.")
    workspace, membership = _lock_membership(membership.workspace, membership.pk)
    # Checked after the lock, afresh: an actor demoted by a concurrent change has lost the right by now.
    if actor is not None:
        rbac.forget_cached_roles(actor)
        rbac.require(rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS),
                     "Only owners of this workspace can change members' roles.")
    if membership.role == role:
        return membership
    before = snapshot(membership, MEMBERSHIP_FIELDS)
    rbac.group_for_role(workspace, membership.role).user_set.remove(membership.user)
    rbac.group_for_role(workspace, role).user_set.add(membership.user)
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    rbac.ensure_owner_floor([workspace])
    audit.record(actor=actor, action="workspace.member_role_change", target=membership, workspace=workspace,
                 before=before, after=snapshot(membership, MEMBERSHIP_FIELDS))
    return membership


@transaction.atomic
def membership_remove(*, actor: User | None, membership: WorkspaceMembership) -> None:
    """Remove a member; removing one of the last two effective owners is refused (R12)."""
    workspace, membership = _lock_membership(membership.workspace, membership.pk)
    if actor is not None:
        rbac.forget_cached_roles(actor)
        rbac.require(rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS),
                     "Only owners of this workspace can remove members.")
    before = snapshot(membership, MEMBERSHIP_FIELDS)
    rbac.group_for_role(workspace, membership.role).user_set.remove(membership.user)
    target_label = str(membership)
    audit.record(actor=actor, action="workspace.member_remove", target=membership, workspace=workspace,
                 before=before, target_label=target_label)
    membership.delete()
    rbac.ensure_owner_floor([workspace])


@transaction.atomic
def workspace_forbid_new_secrets_set(*, actor: User | None, workspace: Workspace, forbid: bool) -> Workspace:
    """Turn the workspace's "no new secrets" policy on or off (R28; docs/design.md, Credential types in governance):
    while it is on, no client secret is created or rotated for the workspace's agents, and agents set up with their
    own identity get none (they add a key or a federated credential). The workspace's owners, explicit or inherited
    (Global, Security and Compliance Administrators, R11), set it; one audit event when it changes."""
    if actor is not None:
        rbac.require(rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS),
                     "Only owners of this workspace and administrators set its credential policy.")
    workspace = Workspace.objects.select_for_update().get(pk=workspace.pk)
    if workspace.forbid_new_secrets == bool(forbid):
        return workspace
    # Said in words: the audit trail redacts any key that names a secret.
    def described(forbidden: bool) -> dict:
        return {"credential_policy": "no new client secrets" if forbidden else "any credential"}

    before = described(workspace.forbid_new_secrets)
    workspace.forbid_new_secrets = bool(forbid)
    workspace.save(update_fields=["forbid_new_secrets"])
    audit.record(actor=actor, action="workspace.credential_policy", target=workspace, workspace=workspace,
                 before=before, after=described(workspace.forbid_new_secrets))
    return workspace
