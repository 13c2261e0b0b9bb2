"""Time-bound access (R17, R18): packages of extra permissions, policies, assignments, and the permission selector.

Every assignment ends. ``agent_permissions_now`` is the one answer to "does this agent hold permission P now": it
treats an assignment past its ``expires_at`` as inactive before any job has run, so access is never longer than
granted. The jobs that end assignments, remind sponsors, expire agents and sweep orphans live in ``lifecycle``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentStatus
from agents.models import Agent, AgentUserObjectPermission, PermissionGrant
from governance.access import signals
from governance.access.choices import ApproverKind, AssignmentStatus, DurationKind, Requestors
from governance.access.ends import access_ends, assignment_ends
from governance.access.models import AccessPackage, Assignment, AssignmentPolicy
from portal import audit, notifications, rbac
from portal.api_permissions import ORGANISATION_READ
from portal.models import Permission, User, Workspace
from portal.timefmt import when

POLICY_FIELDS = ("requestors", "approver_kind", "second_approver_kind", "duration_kind", "duration_value",
                 "fixed_end", "max_hours", "allow_extension", "extension_needs_approval", "justification_required",
                 "request_ttl_days")


# --- packages -------------------------------------------------------------------------------------------------
def _require_owner(actor: User | None, workspace: Workspace) -> None:
    if actor is not None and not rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS):
        raise PermissionDenied("Only the workspace's owners manage its access packages.")


def _grantable(permissions: Iterable[Permission]) -> list[Permission]:
    permissions = list(permissions)
    privileged = sorted(p.name for p in permissions if p.privileged)
    if privileged:
        raise ValidationError(f"Privileged permissions can never reach an agent: {', '.join(privileged)}.")
    if not permissions:
        raise ValidationError("A package bundles at least one permission.")
    return permissions


def _policy_problems(policy: AssignmentPolicy) -> list[str]:
    problems = []
    if policy.duration_kind == DurationKind.FIXED_END and (policy.fixed_end is None or
                                                           policy.fixed_end <= timezone.now()):
        problems.append("A fixed end date must be in the future.")
    if policy.duration_kind != DurationKind.FIXED_END and not policy.duration_value:
        problems.append("Give the duration in days or hours.")
    if policy.approver_kind == ApproverKind.NONE and policy.second_approver_kind != ApproverKind.NONE:
        problems.append("A second approval stage needs a first one.")
    return problems


def _refuse_taken_name(workspace: Workspace, name: str, other_than: AccessPackage | None = None) -> None:
    """Only a package not removed holds its name: a removed one's is free again (docs/design.md, R29)."""
    taken = AccessPackage.objects.filter(workspace=workspace, name=name.strip(), removed_at__isnull=True)
    if other_than is not None:
        taken = taken.exclude(pk=other_than.pk)
    if taken.exists():
        raise ValidationError(f"A package called '{name}' already exists in {workspace.name}.")


@transaction.atomic
def package_save(*, actor: User | None, workspace: Workspace, name: str, description: str = "",
                 permissions: Iterable[Permission], policy: dict, approvers: Iterable[User] = (),
                 second_approvers: Iterable[User] = (), incompatible_with: Iterable[AccessPackage] = (),
                 package: AccessPackage | None = None) -> AccessPackage:
    """Create or edit a package and its policy (owners of the workspace; R4: no privileged permission)."""
    _require_owner(actor, workspace)
    permissions = _grantable(permissions)
    before = None
    if package is None:
        _refuse_taken_name(workspace, name)
        package = AccessPackage.objects.create(workspace=workspace, name=name.strip(), description=description,
                                               created_by=actor)
        rules = AssignmentPolicy(package=package)
    else:
        package = AccessPackage.objects.select_for_update().get(pk=package.pk, workspace=workspace)
        _refuse_removed(package)
        _refuse_taken_name(workspace, name, other_than=package)
        rules = package.policy
        before = _package_snapshot(package)
        package.name, package.description = name.strip(), description
        package.save(update_fields=["name", "description"])
    for key in POLICY_FIELDS:
        if key in policy:
            setattr(rules, key, policy[key])
    problems = _policy_problems(rules)
    if any(p.name == ORGANISATION_READ for p in permissions) and not (
            rules.approver_kind == ApproverKind.GLOBAL_ADMINISTRATORS
            and rules.second_approver_kind in (ApproverKind.NONE, ApproverKind.GLOBAL_ADMINISTRATORS)):
        # R13: reading every workspace is granted by a Global Administrator, never by a workspace's own owners.
        problems.append(f"A package with {ORGANISATION_READ} is approved by Global Administrators (every stage).")
    if problems:
        raise ValidationError(problems)
    rules.save()
    package.permissions.set(permissions)
    rules.approvers.set(approvers)
    rules.second_approvers.set(second_approvers)
    incompatible = [p for p in incompatible_with if p.pk != package.pk]
    if any(p.workspace_id != workspace.pk for p in incompatible):
        raise ValidationError("Incompatible packages must be in the same workspace.")
    package.incompatible_with.set(incompatible)
    audit.record(actor=actor, action="package.update" if before else "package.create", target=package,
                 workspace=workspace, before=before, after=_package_snapshot(package))
    return package


def _package_snapshot(package: AccessPackage) -> dict:
    rules = package.policy
    return {"name": package.name, "permissions": sorted(p.name for p in package.permissions.all()),
            "incompatible_with": sorted(p.name for p in package.incompatible_with.all()),
            **{key: getattr(rules, key) for key in POLICY_FIELDS},
            "approvers": sorted(u.username for u in rules.approvers.all()),
            "second_approvers": sorted(u.username for u in rules.second_approvers.all())}


@transaction.atomic
def package_remove(*, actor: User | None, package: AccessPackage, reason: str) -> AccessPackage:
    """Remove an access package (docs/design.md, R29; docs/blast-radius.md): the owners of its workspace, as for
    editing it. In one transaction every open assignment of it ends — pending requests and active assignments alike,
    through ``assignments_revoke_batch`` (one audit event each, as a review's results), so the tokens carrying its
    permissions are revoked and the people its preview (``governance.impact.previews.package_preview``) lists are
    told (``assignments_ended`` with ``signals.PACKAGE_REMOVED``) — and one event records the removal. The package
    and its records stay, marked removed: nobody requests, edits or assigns it again."""
    package = AccessPackage.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=package.pk)
    _require_owner(actor, package.workspace)
    if package.removed_at is not None:
        raise ValidationError(f"{package.name} was already removed.")
    reason = reason.strip()
    if not reason:
        raise ValidationError("Give the reason for removing the package.")
    open_ids = Assignment.objects.filter(package=package, status__in=[
        AssignmentStatus.PENDING, AssignmentStatus.ACTIVE]).values_list("pk", flat=True)
    ended = assignments_revoke_batch(actor=actor, assignment_ids=list(open_ids), reason=signals.PACKAGE_REMOVED)
    package.removed_at, package.removed_by, package.removal_reason = timezone.now(), actor, reason
    package.save(update_fields=["removed_at", "removed_by", "removal_reason"])
    audit.record(actor=actor, action="package.remove", target=package, workspace=package.workspace,
                 before={"name": package.name, "removed_at": None},
                 after={"name": package.name, "removed_at": package.removed_at, "reason": reason,
                        "assignments_ended": len(ended)})
    return package


def _refuse_removed(package: AccessPackage) -> None:
    if package.removed_at is not None:
        raise ValidationError(f"{package.name} was removed: it can no longer be requested, edited or assigned.",
                              code="package_removed")


# --- who may do what -----------------------------------------------------------------------------------------------
def may_request(user, package: AccessPackage, agent: Agent) -> bool:
    who = package.policy.requestors
    sponsor, owner = agent_policy.is_agent_sponsor(user, agent), agent_policy.is_agent_owner(user, agent)
    owner = owner or rbac.has_workspace_perm(user, agent.workspace, rbac.MANAGE_MEMBERS)
    if who == Requestors.SPONSORS:
        return sponsor
    if who == Requestors.OWNERS:
        return owner
    return sponsor or owner


def _approver_ids(kind: str, named: Iterable[User], workspace: Workspace) -> set[int]:
    if kind == ApproverKind.NAMED:
        return {u.pk for u in named if u.is_active}
    if kind == ApproverKind.GLOBAL_ADMINISTRATORS:
        return set(rbac.global_administrators().values_list("pk", flat=True))
    if kind == ApproverKind.WORKSPACE_OWNERS:
        return {owner.user.pk for owner in rbac.effective_owners(workspace)}
    return set()


def approvers_for(assignment: Assignment) -> set[int]:
    """Who may decide the assignment's current stage; never the requester (R17)."""
    rules = assignment.package.policy
    if assignment.stage == 1:
        ids = _approver_ids(rules.approver_kind, rules.approvers.all(), assignment.package.workspace)
    else:
        ids = _approver_ids(rules.second_approver_kind, rules.second_approvers.all(), assignment.package.workspace)
    return ids - {assignment.requested_by_id}


def may_manage_assignment(user, assignment: Assignment) -> bool:
    """Early revoke: the agent's owners and sponsors, and the workspace's owners."""
    agent = assignment.agent
    return agent_policy.can_toggle_agent(user, agent)


# --- assignments ---------------------------------------------------------------------------------------------------
def _duration(rules: AssignmentPolicy, requested_hours: int | None, now: datetime) -> datetime:
    if rules.duration_kind == DurationKind.FIXED_END:
        end = rules.fixed_end
    else:
        hours = rules.duration_value * (24 if rules.duration_kind == DurationKind.DAYS else 1)
        if requested_hours:
            hours = min(hours, requested_hours)
        end = now + timedelta(hours=hours)
    return min(end, now + timedelta(hours=rules.max_hours))


def _conflict(package: AccessPackage, agent: Agent) -> AccessPackage | None:
    incompatible = package.incompatible_with.all()
    held = Assignment.objects.filter(agent=agent, package__in=incompatible,
                                     status__in=[AssignmentStatus.PENDING, AssignmentStatus.ACTIVE],
                                     ).select_related("package").first()
    return held.package if held else None


def _activate(assignment: Assignment, now: datetime) -> None:
    assignment.status = AssignmentStatus.ACTIVE
    assignment.starts_at = now
    assignment.expires_at = _duration(assignment.package.policy, assignment.requested_hours, now)


def _link(assignment: Assignment) -> str:
    return reverse("assignment-detail", args=[assignment.pk])


@transaction.atomic
def assignment_request(*, actor: User, package: AccessPackage, agent: Agent, justification: str = "",
                       hours: int | None = None) -> Assignment:
    """Request a package for an agent; active at once when the policy needs no approval (R17)."""
    # Locked, so a request waits for a removal in progress and then sees it (docs/design.md, R29).
    package = AccessPackage.objects.select_for_update(of=("self",)).select_related("policy", "workspace") \
        .get(pk=package.pk)
    _refuse_removed(package)
    agent = Agent.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=agent.pk)
    rules = package.policy
    if agent.workspace_id != package.workspace_id:
        raise ValidationError("The package belongs to another workspace than the agent.")
    if not may_request(actor, package, agent):
        raise PermissionDenied(f"The policy of {package.name} lets {rules.get_requestors_display().lower()} "
                               f"request it.")
    if agent.status != AgentStatus.ACTIVE:
        raise ValidationError(f"{agent.name} is {agent.get_status_display().lower()}; only active agents get access.")
    if rules.justification_required and not justification.strip():
        raise ValidationError("This package's policy requires a justification.")
    if hours is not None and hours <= 0:
        raise ValidationError("Ask for at least one hour.")
    conflict = _conflict(package, agent)
    if conflict is not None:
        raise ValidationError(f"{agent.name} holds or requested {conflict.name}, which is incompatible with "
                              f"{package.name} (separation of duties).")
    if Assignment.objects.filter(package=package, agent=agent,
                                 status__in=[AssignmentStatus.PENDING, AssignmentStatus.ACTIVE]).exists():
        raise ValidationError(f"{agent.name} already holds or requested {package.name}.")
    now = timezone.now()
    assignment = Assignment(package=package, agent=agent, requested_by=actor, justification=justification.strip(),
                            requested_at=now, request_expires_at=now + timedelta(days=rules.request_ttl_days),
                            requested_hours=hours)
    if rules.approver_kind == ApproverKind.NONE:
        _activate(assignment, now)
    assignment.save()
    audit.record(actor=actor, action="assignment.request", target=assignment, workspace=package.workspace,
                 after=_snapshot(assignment))
    if assignment.status == AssignmentStatus.PENDING:
        _notify_approvers(assignment)
    return assignment


def _snapshot(assignment: Assignment) -> dict:
    return {"package": assignment.package.name, "agent": assignment.agent.name, "status": assignment.status,
            "stage": assignment.stage, "starts_at": assignment.starts_at, "expires_at": assignment.expires_at}


def _notify_approvers(assignment: Assignment) -> None:
    notifications.notify(recipients=User.objects.filter(pk__in=approvers_for(assignment)),
                         subject=f"Access request: {assignment.package.name} for {assignment.agent.name}",
                         body=f"{assignment.requested_by.username if assignment.requested_by else 'The system'} "
                              f"asks for {assignment.package.name}: {assignment.justification}",
                         link=_link(assignment))


def _lock(assignment: Assignment) -> Assignment:
    return Assignment.objects.select_for_update(of=("self",)).select_related(
        "package__policy", "package__workspace", "agent__workspace", "requested_by").get(pk=assignment.pk)


@transaction.atomic
def assignment_decide(*, actor: User, assignment: Assignment, approve: bool, reason: str = "") -> Assignment:
    """An approver of the current stage approves or denies; the requester never approves their own request."""
    assignment = _lock(assignment)
    pending_extension = assignment.status == AssignmentStatus.ACTIVE and assignment.extension_until
    if assignment.status != AssignmentStatus.PENDING and not pending_extension:
        raise ValidationError(f"This request is already {assignment.get_status_display().lower()}.",
                              code="already_decided")
    if assignment.requested_by_id == actor.pk:
        raise PermissionDenied("You cannot approve your own request.")
    if actor.pk not in approvers_for(assignment):
        raise PermissionDenied("You are not an approver of this request.")
    now = timezone.now()
    before = _snapshot(assignment)
    if pending_extension:
        if approve:
            assignment.expires_at, assignment.reminded_days = assignment.extension_until, []
        assignment.extension_until = None
        assignment.save(update_fields=["expires_at", "extension_until", "reminded_days"])
        audit.record(actor=actor, action="assignment.extension_approve" if approve else "assignment.extension_deny",
                     target=assignment, workspace=assignment.package.workspace, before=before,
                     after={**_snapshot(assignment), "reason": reason})
        return assignment
    if not approve:
        if not reason.strip():
            raise ValidationError("Give the reason for the denial.")
        assignment.status, assignment.ended_at, assignment.end_reason = AssignmentStatus.DENIED, now, reason.strip()
    elif assignment.stage == 1 and assignment.package.policy.second_approver_kind != ApproverKind.NONE:
        assignment.first_approver, assignment.stage = actor, 2
    else:
        if assignment.stage == 1:
            assignment.first_approver = actor
        else:
            assignment.second_approver = actor
        _activate(assignment, now)
    assignment.save()
    audit.record(actor=actor, action="assignment.approve" if approve else "assignment.deny", target=assignment,
                 workspace=assignment.package.workspace, before=before, after=_snapshot(assignment))
    if assignment.status == AssignmentStatus.PENDING:
        _notify_approvers(assignment)
    elif assignment.requested_by:
        notifications.notify(recipients=[assignment.requested_by],
                             subject=f"{assignment.package.name} for {assignment.agent.name}: "
                                     f"{assignment.get_status_display().lower()}",
                             body=reason or f"Until {when(assignment_ends(assignment))}.",
                             link=_link(assignment))
    return assignment


@transaction.atomic
def assignment_extend(*, actor: User, assignment: Assignment, hours: int) -> Assignment:
    """Extend an active assignment within the policy's maximum; with approval when the policy says so."""
    assignment = _lock(assignment)
    rules = assignment.package.policy
    if not may_request(actor, assignment.package, assignment.agent):
        raise PermissionDenied("Only those who may request this package extend it.")
    if not assignment.is_active():
        raise ValidationError("Only an active assignment is extended; request the package again.")
    if not rules.allow_extension:
        raise ValidationError(f"The policy of {assignment.package.name} allows no extension.")
    if hours <= 0:
        raise ValidationError("Extend by at least one hour.")
    until = min(assignment.expires_at + timedelta(hours=hours),
                assignment.starts_at + timedelta(hours=rules.max_hours))
    if until <= assignment.expires_at:
        raise ValidationError(f"The assignment already lasts the policy's maximum of {rules.max_hours} hours.")
    before = _snapshot(assignment)
    if rules.extension_needs_approval and rules.approver_kind != ApproverKind.NONE:
        assignment.extension_until, assignment.requested_by, assignment.stage = until, actor, 1
        assignment.save(update_fields=["extension_until", "requested_by", "stage"])
        _notify_approvers(assignment)
        action = "assignment.extension_request"
    else:
        assignment.expires_at, assignment.reminded_days = until, []  # the new end gets its own reminders
        assignment.save(update_fields=["expires_at", "reminded_days"])
        action = "assignment.extend"
    audit.record(actor=actor, action=action, target=assignment, workspace=assignment.package.workspace,
                 before=before, after={**_snapshot(assignment), "extension_until": assignment.extension_until})
    return assignment


@transaction.atomic
def assignment_revoke(*, actor: User | None, assignment: Assignment, reason: str = "") -> Assignment:
    """End an assignment early (owners and sponsors of the agent, the workspace's owners)."""
    assignment = _lock(assignment)
    if actor is not None and not may_manage_assignment(actor, assignment):
        raise PermissionDenied("Only the agent's owners and sponsors revoke its access.")
    if assignment.status not in (AssignmentStatus.PENDING, AssignmentStatus.ACTIVE):
        raise ValidationError(f"This assignment is already {assignment.get_status_display().lower()}.")
    before = _snapshot(assignment)
    assignment.status, assignment.ended_at = AssignmentStatus.REVOKED, timezone.now()
    assignment.end_reason = reason or "revoked"
    assignment.save(update_fields=["status", "ended_at", "end_reason"])
    signals.assignments_ended.send(sender=Assignment, assignments=[assignment], reason="assignment revoked")
    audit.record(actor=actor, action="assignment.revoke", target=assignment, workspace=assignment.package.workspace,
                 before=before, after=_snapshot(assignment))
    return assignment


# --- the permission selector (R18) ------------------------------------------------------------------------------
def active_assignments(agent: Agent, now: datetime | None = None) -> QuerySet[Assignment]:
    now = now or timezone.now()
    return Assignment.objects.filter(agent=agent, status=AssignmentStatus.ACTIVE, expires_at__gt=now)


def agent_permissions_now(agent: Agent, now: datetime | None = None) -> set[str]:
    """Every permission the agent holds at ``now``: its blueprint grants (until retirement) and its active package
    assignments, an assignment one second past its end already excluded — whether or not a job has run."""
    now = now or timezone.now()
    if agent.status != AgentStatus.ACTIVE or agent.is_expired(now):
        return set()
    fixed = set(PermissionGrant.objects.filter(identity__agent=agent, ended_at__isnull=True)
                .values_list("permission__name", flat=True))
    packaged = set(Permission.objects.filter(access_packages__assignments__in=active_assignments(agent, now))
                   .values_list("name", flat=True))
    return fixed | packaged


def assignments_visible_to(user) -> QuerySet[Assignment]:
    """Assignments of the agents the user may see, plus those the user may approve."""
    visible = agent_policy.agents_visible_to(user)
    return Assignment.objects.filter(Q(agent__in=visible) | Q(requested_by=user)).select_related(
        "package", "agent", "requested_by", "package__workspace")


def approver_inbox(user) -> list[Assignment]:
    """Pending requests (and extensions) the user may decide now."""
    pending = Assignment.objects.filter(Q(status=AssignmentStatus.PENDING) | Q(status=AssignmentStatus.ACTIVE,
                                                                               extension_until__isnull=False))
    pending = pending.select_related("package__policy", "package__workspace", "agent", "requested_by")
    if not rbac.is_global_administrator(user):
        workspaces = rbac.workspaces_owned_by(user).values("pk")
        pending = pending.filter(Q(package__workspace__in=workspaces) | Q(package__policy__approvers=user)
                                 | Q(package__policy__second_approvers=user)).distinct()
    return [a for a in pending if user.pk in approvers_for(a)]


def expiring_for_sponsor(user, days: int = 14) -> QuerySet[Assignment]:
    """Active assignments of agents the user sponsors that end within ``days``."""
    now = timezone.now()
    sponsored = AgentUserObjectPermission.objects.filter(user=user, permission__codename=agent_policy.SPONSOR_AGENT)
    return Assignment.objects.filter(status=AssignmentStatus.ACTIVE, expires_at__gt=now,
                                     expires_at__lte=now + timedelta(days=days),
                                     agent__in=sponsored.values("content_object_id")).select_related(
        "package", "agent").order_by("expires_at")


# --- answers to the registry's signals -----------------------------------------------------------------------------
def package_grants(agent: Agent) -> list[dict]:
    rows = []
    for assignment in active_assignments(agent).select_related("package").prefetch_related("package__permissions"):
        for permission in assignment.package.permissions.all():
            rows.append({"permission": permission.name, "source": f"Access package {assignment.package.name}",
                         "since": assignment.starts_at, "ends": access_ends(assignment.expires_at, agent.expires_at),
                         "link": _link(assignment)})
    return rows


def end_for_retired_agent(agent: Agent, now: datetime) -> dict:
    """R5: retirement ends every open assignment in the same transaction."""
    open_ = Assignment.objects.filter(agent=agent, status__in=[AssignmentStatus.PENDING, AssignmentStatus.ACTIVE])
    ended = open_.update(status=AssignmentStatus.REVOKED, ended_at=now, end_reason="agent retired")
    return {"assignments_ended": ended}




def assignments_revoke_batch(*, actor: User | None, assignment_ids: Iterable[int], reason: str,
                             action: str = "assignment.revoke") -> list[int]:
    """Revoke many assignments at once with the rules of ``assignment_revoke``: only pending or active ones end.

    For jobs (an access review's results, R19): the rows are locked, ended by one UPDATE and each gets its audit
    event in the caller's transaction (``record_many``). Returns the ids actually revoked; the others had ended
    already and are left alone, so a rerun revokes nothing twice. A person revoking one assignment uses
    ``assignment_revoke`` (it checks their permission); here ``actor`` is recorded, not checked.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("assignments_revoke_batch() runs inside the caller's transaction.")
    open_ = list(Assignment.objects.select_for_update(of=("self",))
                 .filter(pk__in=list(assignment_ids), status__in=[AssignmentStatus.PENDING, AssignmentStatus.ACTIVE])
                 .select_related("package__workspace", "agent").order_by("pk"))
    if not open_:
        return []
    now = timezone.now()
    Assignment.objects.filter(pk__in=[a.pk for a in open_]).update(
        status=AssignmentStatus.REVOKED, ended_at=now, end_reason=reason or "revoked", extension_until=None)
    changes = []
    for assignment in open_:
        before = _snapshot(assignment)
        assignment.status, assignment.ended_at, assignment.end_reason = AssignmentStatus.REVOKED, now, reason
        changes.append(audit.Change(action, assignment, assignment.package.workspace, before=before,
                                    after=_snapshot(assignment)))
    audit.record_many(actor=actor, changes=changes)
    signals.assignments_ended.send(sender=Assignment, assignments=open_, reason=reason or "assignment revoked")
    return [a.pk for a in open_]
