"""Read queries, always restricted to what the user may see. Not visible → ``Http404``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, time, timedelta

from django.db.models import Count, Max, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from portal import rbac
from portal.choices import JobStatus, WorkspaceRole
from portal.models import AuditEvent, DirectoryRoleAssignment, JobRun, User, Workspace, WorkspaceMembership


def workspace_get(user, slug: str) -> Workspace:
    workspace = rbac.workspaces_visible_to(user).filter(slug=slug).select_related(
        "owner_group", "contributor_group").first()
    if workspace is None:
        raise Http404("No such workspace.")
    return workspace


def membership_get(user, workspace: Workspace, membership_id: int) -> WorkspaceMembership:
    membership = WorkspaceMembership.objects.filter(pk=membership_id, workspace=workspace).select_related(
        "user", "workspace").first()
    if membership is None or not rbac.has_workspace_perm(user, workspace, rbac.VIEW_WORKSPACE):
        raise Http404("No such member.")
    return membership


def memberships_of(workspace: Workspace, search: str = "") -> QuerySet[WorkspaceMembership]:
    qs = WorkspaceMembership.objects.filter(workspace=workspace).select_related("user", "added_by")
    if search:
        qs = qs.filter(Q(user__username__icontains=search) | Q(user__display_name__icontains=search))
    return qs.order_by("-role", "user__username")


def workspace_summaries(user) -> QuerySet[Workspace]:
    return rbac.workspaces_visible_to(user).annotate(
        owner_count=Count("memberships", filter=Q(memberships__role=WorkspaceRole.OWNER)),
        contributor_count=Count("memberships", filter=Q(memberships__role=WorkspaceRole.CONTRIBUTOR)),
    ).order_by("name")


def audit_events_visible_to(user) -> QuerySet[AuditEvent] | None:
    """All events for audit readers; owners see their workspaces' events; anyone else: None (403)."""
    if rbac.can_read_all_audit(user):
        return AuditEvent.objects.all()
    if rbac.owns_any_workspace(user):
        return AuditEvent.objects.filter(workspace__in=rbac.workspaces_owned_by(user))
    return None


def audit_events_filtered(events: QuerySet[AuditEvent], data: dict) -> QuerySet[AuditEvent]:
    tz = timezone.get_current_timezone()
    if data.get("actor"):
        events = events.filter(actor_name__icontains=data["actor"])
    if data.get("actor_kind"):
        events = events.filter(actor_kind=data["actor_kind"])
    if data.get("action"):
        events = events.filter(action__startswith=data["action"])
    if data.get("target"):
        term = data["target"]
        events = events.filter(Q(target_type__icontains=term) | Q(target_id=term) | Q(target_label__icontains=term))
    if data.get("since"):
        events = events.filter(created_at__gte=datetime.combine(data["since"], time.min, tz))
    if data.get("until"):
        events = events.filter(created_at__lt=datetime.combine(data["until"] + timedelta(days=1), time.min, tz))
    return events.select_related("workspace")


def users_search(search: str = "") -> QuerySet[User]:
    qs = User.objects.select_related("manager")
    if search:
        qs = qs.filter(Q(username__icontains=search) | Q(display_name__icontains=search) | Q(email__icontains=search))
    return qs.order_by("username")


def role_assignments_of(user: User) -> QuerySet[DirectoryRoleAssignment]:
    return DirectoryRoleAssignment.objects.filter(user=user).select_related("role", "assigned_by")


def latest_job_runs(limit: int = 50) -> QuerySet[JobRun]:
    return JobRun.objects.select_related("triggered_by").order_by("-started_at", "-id")[:limit]


#: Jobs scheduled this often or more are "frequent": the Jobs page folds their successful runs away by default.
FREQUENT_JOB_PERIOD = timedelta(minutes=5)
#: How far back the folded runs are counted (one bounded count on the runs' time index).
FOLDED_COUNT_WINDOW = timedelta(hours=24)


def job_runs_filtered(*, job: str = "", status: str = "", routine: bool = False, frequent: Sequence[str] = (),
                      limit: int = 50) -> tuple[list[JobRun], int]:
    """The Jobs page's recent runs, newest first, narrowed to one job and one outcome when given.

    Unless ``routine`` is set, successful runs of the ``frequent`` jobs are folded away (they would fill the page every
    few minutes), and the second answer says how many were folded in the last ``FOLDED_COUNT_WINDOW``; a filter on
    one job or on "succeeded" shows them all. Two queries."""
    runs = JobRun.objects.select_related("triggered_by")
    if job:
        runs = runs.filter(job=job)
    if status:
        runs = runs.filter(status=status)
    folded = 0
    if not (routine or job or status == JobStatus.SUCCEEDED):
        routine_runs = Q(job__in=list(frequent), status=JobStatus.SUCCEEDED)
        runs = runs.exclude(routine_runs)
        folded = JobRun.objects.filter(routine_runs,
                                       started_at__gte=timezone.now() - FOLDED_COUNT_WINDOW).count()
    return list(runs.order_by("-started_at", "-id")[:limit]), folded


def last_run_per_job() -> dict[str, JobRun]:
    """The newest run of each job, in two queries however many jobs and runs there are."""
    last_ids = JobRun.objects.values("job").annotate(last_id=Max("id")).values_list("last_id", flat=True)
    return {run.job: run for run in JobRun.objects.filter(pk__in=list(last_ids))}


def last_success_per_job(names: list[str]) -> dict[str, datetime]:
    """When each named job last finished successfully: one short query per job on the (job, started_at) index, so
    ``/healthz`` stays cheap however long the run history grows."""
    finished = {}
    for name in names:
        last = (JobRun.objects.filter(job=name, status=JobStatus.SUCCEEDED).order_by("-started_at", "-id")
                .values_list("finished_at", flat=True).first())
        if last is not None:
            finished[name] = last
    return finished


def dashboard_counts(user, workspace: Workspace | None) -> dict:
    since = timezone.now() - timedelta(hours=24)
    events = audit_events_visible_to(user)
    counts = {
        "workspaces": rbac.workspaces_visible_to(user).count(),
        "audit_24h": events.filter(created_at__gte=since).count() if events is not None else None,
        "job_failures_24h": JobRun.objects.filter(status=JobStatus.FAILED, started_at__gte=since).count(),
    }
    if workspace is not None:
        per_role = dict(
            WorkspaceMembership.objects.filter(workspace=workspace).values_list("role").annotate(n=Count("id"))
        )
        counts["owners"] = rbac.effective_owner_counts([workspace.pk])[workspace.pk]
        counts["explicit_owners"] = per_role.get(WorkspaceRole.OWNER, 0)
        counts["contributors"] = per_role.get(WorkspaceRole.CONTRIBUTOR, 0)
    return counts
