"""Portal pages. Views are thin: parse input, fetch through selectors, call one service, render.

Objects a user may not see are 404 (selectors); actions they may not take are 403 (services raise
PermissionDenied, which Django renders as 403).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from kombu import Connection

from portal import audit, audit_log, directory, jobs, navigation, notifications, rbac, selectors, workspaces
from portal.cache import redis_degraded
from portal.forms import (
    AuditFilterForm,
    JobRunFilterForm,
    MemberAddForm,
    MemberRoleForm,
    RoleAssignForm,
    ThrottledAuthenticationForm,
    UserCreateForm,
    UserUpdateForm,
    WorkspaceCreateForm,
)
from portal.middleware import SESSION_WORKSPACE_KEY
from portal.models import DirectoryRole, DirectoryRoleAssignment, User
from portal.network import client_ip
from portal.viewutils import act, flash_form_errors, page, streamed_export, submit

# --- sign-in ------------------------------------------------------------------------------------------


class ThrottledLoginView(auth_views.LoginView):
    """Sign-in that refuses an account or address after repeated failures, for a while (HTTP 429)."""

    template_name = "portal/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def _keys(self) -> list[tuple[str, int]]:
        username = self.request.POST.get("username", "").strip().lower()[:150]
        address = client_ip(self.request) or ""
        limit = settings.LOGIN_FAILURE_LIMIT
        return [(f"login-fail:user:{username}", limit), (f"login-fail:addr:{address}", limit * 4)]

    def post(self, request, *args, **kwargs):
        if any((cache.get(key) or 0) >= limit for key, limit in self._keys()):
            form = self.get_form()
            minutes = int(settings.LOGIN_FAILURE_WINDOW.total_seconds() // 60)
            form.errors.clear()
            form.add_error(None, f"Too many failed sign-ins. Wait {minutes} minutes and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        window = int(settings.LOGIN_FAILURE_WINDOW.total_seconds())
        for key, _limit in self._keys():
            cache.add(key, 0, timeout=window)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=window)
        return super().form_invalid(form)

    def form_valid(self, form):
        cache.delete(self._keys()[0][0])
        return super().form_valid(form)


# --- dashboard and workspaces -------------------------------------------------------------------------


@login_required
def dashboard(request):
    workspace = request.workspace
    cards = navigation.dashboard_cards(request)
    context = {
        "counts": selectors.dashboard_counts(request.user, workspace),
        "owners": rbac.effective_owners(workspace) if workspace else [],
        "recent_runs": selectors.latest_job_runs(5) if rbac.can_view_jobs(request.user) else None,
        "cards": [card for card in cards if card.get("section") != "posture"],
        # Pictures of the workspace's posture, each drawn from what the viewer may see (docs/design.md, "Pictures").
        "posture": [card for card in cards if card.get("section") == "posture"],
    }
    return render(request, "portal/dashboard.html", context)


@login_required
@require_POST
def workspace_switch(request):
    workspace = selectors.workspace_get(request.user, request.POST.get("workspace", ""))
    request.session[SESSION_WORKSPACE_KEY] = workspace.pk
    target = request.POST.get("next") or reverse("dashboard")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = reverse("dashboard")
    return redirect(target)


@login_required
def workspace_list(request):
    return render(request, "portal/workspace_list.html", {
        "workspaces": selectors.workspace_summaries(request.user),
        "can_create": rbac.can_create_workspace(request.user),
    })


@login_required
@require_http_methods(["GET", "POST"])
def workspace_create(request):
    rbac.require(rbac.can_create_workspace(request.user),
                 "Only Global and Privileged Role Administrators create workspaces.")
    form = WorkspaceCreateForm(request.POST or None)
    workspace = submit(request, form, workspaces.workspace_create)
    if workspace is not None:
        messages.success(request, f"Workspace {workspace.name} created.")
        return redirect("workspace-members", slug=workspace.slug)
    return render(request, "portal/workspace_form.html", {"form": form})


@login_required
def workspace_members(request, slug: str):
    workspace = selectors.workspace_get(request.user, slug)
    search = request.GET.get("q", "").strip()
    can_manage = rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS)
    owners = rbac.effective_owners(workspace)
    context = {
        "workspace": workspace,
        "page": page(request, selectors.memberships_of(workspace, search)),
        "search": search,
        "query": urlencode({"q": search}) if search else "",
        "effective_owners": owners,
        "inherited_owners": [o for o in owners if o.inherited],
        "can_manage": can_manage,
        "add_form": MemberAddForm() if can_manage else None,
        "roles": MemberRoleForm.base_fields["role"].choices,
        "min_owners": rbac.MIN_EFFECTIVE_OWNERS,
    }
    return render(request, "portal/members.html", context)


@login_required
@require_POST
def workspace_credential_policy(request, slug: str):
    """Turn the workspace's "no new client secrets" policy on (``forbid_new_secrets=on``) or off (R28)."""
    workspace = selectors.workspace_get(request.user, slug)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only owners of this workspace and administrators set its credential policy.")
    choice = request.POST.get("forbid_new_secrets")
    if choice not in ("on", "off"):
        messages.error(request, "Choose whether new client secrets are forbidden (on or off).")
        return redirect("workspace-members", slug=workspace.slug)
    act(request, workspaces.workspace_forbid_new_secrets_set,
        lambda w: f"New client secrets are {'forbidden' if w.forbid_new_secrets else 'allowed'} in {w.name}.",
        workspace=workspace, forbid=choice == "on")
    return redirect("workspace-members", slug=workspace.slug)


@login_required
@require_POST
def member_add(request, slug: str):
    workspace = selectors.workspace_get(request.user, slug)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only owners of this workspace can add members.")
    form = MemberAddForm(request.POST)
    if form.is_valid():
        act(request, workspaces.membership_add,
             lambda m: f"{m.user.username} added as {m.get_role_display().lower()}.",
             workspace=workspace, **form.cleaned_data)
    else:
        flash_form_errors(request, form)
    return redirect("workspace-members", slug=workspace.slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_role(request, slug: str, membership_id: int):
    """GET: the confirmation page (what the new role may do, what it may no longer do); POST: the change."""
    workspace = selectors.workspace_get(request.user, slug)
    membership = selectors.membership_get(request.user, workspace, membership_id)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only owners of this workspace change members' roles.")
    form = MemberRoleForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        messages.error(request, "Choose owner or contributor.")
        return redirect("workspace-members", slug=workspace.slug)
    if request.method == "GET":
        return render(request, "portal/member_role.html", {"workspace": workspace, "membership": membership,
                                                           "role": form.cleaned_data["role"]})
    act(request, workspaces.membership_change_role,
         lambda m: f"{m.user.username} is now {m.get_role_display().lower()}.",
         membership=membership, role=form.cleaned_data["role"])
    return redirect("workspace-members", slug=workspace.slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_remove(request, slug: str, membership_id: int):
    workspace = selectors.workspace_get(request.user, slug)
    membership = selectors.membership_get(request.user, workspace, membership_id)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only owners of this workspace can remove members.")
    if request.method == "POST":
        act(request, workspaces.membership_remove,
             lambda _: f"{membership.user.username} removed from {workspace.name}.", membership=membership)
        return redirect("workspace-members", slug=workspace.slug)
    return render(request, "portal/member_remove.html", {"workspace": workspace, "membership": membership})


# --- directory ----------------------------------------------------------------------------------------


def _require_directory(request) -> None:
    rbac.require(rbac.can_manage_directory(request.user),
                 "The directory is managed by Global Administrators and Privileged Role Administrators.")


@login_required
def directory_users(request):
    _require_directory(request)
    search = request.GET.get("q", "").strip()
    return render(request, "portal/directory_users.html", {
        "page": page(request, selectors.users_search(search)), "search": search,
        "query": urlencode({"q": search}) if search else "",
    })


@login_required
@require_http_methods(["GET", "POST"])
def directory_user_create(request):
    _require_directory(request)
    form = UserCreateForm(request.POST or None)
    user = submit(request, form, directory.user_create)
    if user is not None:
        messages.success(request, f"User {user.username} created.")
        return redirect("directory-user", user_id=user.pk)
    return render(request, "portal/directory_user_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def directory_user(request, user_id: int):
    _require_directory(request)
    subject = get_object_or_404(User.objects.select_related("manager"), pk=user_id)
    initial = {"display_name": subject.display_name, "email": subject.email,
               "manager": subject.manager.username if subject.manager else ""}
    form = UserUpdateForm(request.POST or None, initial=initial)
    if submit(request, form, directory.user_update, user=subject) is not None:
        messages.success(request, "Saved.")
        return redirect("directory-user", user_id=subject.pk)
    return render(request, "portal/directory_user.html", {
        "subject": subject, "form": form, "assignments": selectors.role_assignments_of(subject),
        "role_form": RoleAssignForm(), "memberships": subject.memberships.select_related("workspace"),
    })


@login_required
@require_POST
def directory_user_active(request, user_id: int):
    _require_directory(request)
    subject = get_object_or_404(User, pk=user_id)
    service = directory.user_reactivate if request.POST.get("active") == "1" else directory.user_deactivate
    act(request, service, lambda u: f"{u.username} is now {'active' if u.is_active else 'deactivated'}.",
         user=subject)
    return redirect("directory-user", user_id=subject.pk)


@login_required
@require_POST
def directory_role_assign(request, user_id: int):
    _require_directory(request)
    subject = get_object_or_404(User, pk=user_id)
    form = RoleAssignForm(request.POST)
    if form.is_valid():
        act(request, directory.role_assign, lambda a: f"{a.role.name} assigned to {subject.username}.",
             user=subject, role=form.cleaned_data["role"])
    else:
        messages.error(request, "Choose a role.")
    return redirect("directory-user", user_id=subject.pk)


@login_required
@require_POST
def directory_role_unassign(request, assignment_id: int):
    _require_directory(request)
    assignment = get_object_or_404(DirectoryRoleAssignment.objects.select_related("user", "role"), pk=assignment_id)
    act(request, directory.role_unassign,
         lambda _: f"{assignment.role.name} removed from {assignment.user.username}.", assignment=assignment)
    return redirect("directory-user", user_id=assignment.user_id)


@login_required
def directory_roles(request):
    _require_directory(request)
    roles = DirectoryRole.objects.prefetch_related("permissions", "assignments__user").order_by("name")
    return render(request, "portal/directory_roles.html", {"roles": roles})


# --- audit --------------------------------------------------------------------------------------------


def _audit_queryset(request):
    events = selectors.audit_events_visible_to(request.user)
    if events is None:
        raise PermissionDenied("The audit trail is open to workspace owners and audit readers.")
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        events = selectors.audit_events_filtered(events, form.cleaned_data)
    elif form.is_bound:
        events = events.none()
    else:
        events = events.select_related("workspace", "leaf")
    return form, events


@login_required
@require_GET
def audit_list(request):
    form, events = _audit_queryset(request)
    query = request.GET.copy()
    query.pop("page", None)
    head = audit_log.latest_head()
    return render(request, "portal/audit_list.html", {
        "form": form, "page": page(request, events.order_by("-id")), "query": query.urlencode(),
        "tree_head": head, "tree_head_time": audit_log.head_time(head) if head else None,
        "pending": audit_log.pending_count(),
    })


@login_required
@require_GET
def audit_export(request):
    """Stream the filtered events as CSV or JSON; memory stays flat whatever the row count. With ``proofs=1``
    (JSON only) each event comes with its inclusion proof and the signed tree head, to check offline."""
    _form, events = _audit_queryset(request)
    if request.GET.get("proofs") == "1":
        audit_log.sequence()  # integrate what is pending so it can be proven; returns at once if a run is under way
        filters = {key: value for key, value in request.GET.items() if key not in ("format", "proofs", "page")}
        response = StreamingHttpResponse(audit_log.export_with_proofs(events, filters),
                                         content_type="application/json")
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response["Content-Disposition"] = f'attachment; filename="audit-with-proofs-{stamp}.json"'
        return response
    columns = [c if c != "workspace__slug" else "workspace" for c in audit.EXPORT_COLUMNS]
    return streamed_export(request, audit.export_rows(events), columns, "audit",
                           csv_cell=lambda column, value: json.dumps(value) if column in ("before", "after")
                           else value)


@require_GET
def audit_log_key(request):
    """The audit log's public key, published so anyone holding an export can check its tree head (R23)."""
    return JsonResponse(audit_log.key_document())


# --- jobs ---------------------------------------------------------------------------------------------


@login_required
@require_GET
def job_list(request):
    rbac.require(rbac.can_view_jobs(request.user), "The Jobs page is for workspace owners.")
    last_runs = selectors.last_run_per_job()
    scheduler = jobs.scheduler_health()
    health_by_name = {health.job.name: health for health in scheduler.jobs}
    rows = []
    for job in sorted(jobs.REGISTRY.values(), key=lambda j: j.name):
        last = last_runs.get(job.name)
        rows.append({"job": job, "last": last, "next": job.next_run_after(last.started_at if last else None),
                     "health": health_by_name[job.name]})
    form = JobRunFilterForm(request.GET or None, job_names=sorted(jobs.REGISTRY))
    filters = form.cleaned_data if form.is_valid() else {}
    frequent = sorted(job.name for job in jobs.REGISTRY.values()
                      if job.period is not None and job.period <= selectors.FREQUENT_JOB_PERIOD)
    runs, folded = selectors.job_runs_filtered(job=filters.get("job", ""), status=filters.get("status", ""),
                                               routine=filters.get("routine", False), frequent=frequent)
    query = urlencode({key: value for key, value in request.GET.items() if key in form.fields and value})
    template = "portal/partials/job_runs.html" if request.htmx else "portal/job_list.html"
    return render(request, template, {"rows": rows, "runs": runs, "scheduler": scheduler, "form": form,
                                      "folded": folded, "query": query, "frequent": frequent,
                                      "filtered": bool(filters.get("job") or filters.get("status"))})


@login_required
@require_POST
def job_run_now(request, name: str):
    if name not in jobs.REGISTRY:
        raise Http404("No such job.")
    run = jobs.job_enqueue(actor=request.user, name=name)
    messages.success(request, f"{name} queued (run #{run.pk}); a worker will pick it up shortly.")
    return redirect("job-list")


# --- health -------------------------------------------------------------------------------------------


@require_GET
def healthz(request):
    """Liveness and readiness (docs/design.md, Faults): 503 ``unavailable`` when the database does not answer;
    200 ``degraded`` with the failing parts when only Redis (broker and cache) or the broker does not answer, since
    the node still serves tokens with per-process limits and the load balancer should keep it; 200 ``ok`` otherwise."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # report, don't raise: this endpoint must answer
        checks["database"] = f"error: {type(error).__name__}"
    try:
        with Connection(settings.CELERY_BROKER_URL,
                        transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                        connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"error: {type(error).__name__}"
    redis = settings.CELERY_BROKER_URL.startswith("redis")
    failing = [("redis" if redis and name == "broker" else name) for name, value in checks.items() if value != "ok"]
    cache.get("aip:healthz")  # asks Redis (unless it failed a moment ago): the cache's own view of it
    if redis_degraded() and "redis" not in failing:  # the cache serves from memory, whatever the broker says
        failing.append("redis")
    if checks["database"] != "ok":
        return JsonResponse({"status": "unavailable", "failing": failing, "checks": checks}, status=503)
    scheduler = _scheduler_check(checks, failing)
    return JsonResponse({"status": "degraded" if failing else "ok", "failing": failing, "checks": checks,
                         "scheduler": scheduler})


def _scheduler_check(checks: dict, failing: list) -> dict:
    """Beat's last tick and each job's last success; beat or a job past twice its period makes the node
    ``degraded`` with the failing part ``scheduler`` (still 200: restarting a web node would not bring beat back)."""
    try:
        health = jobs.scheduler_health()
    except Exception as error:  # report, don't raise: this endpoint must answer
        checks["scheduler"] = f"error: {type(error).__name__}"
        failing.append("scheduler")
        return {}
    checks["scheduler"] = "late" if health.late else "ok"
    if health.late:
        failing.append("scheduler")
    return {"beat_last_tick": health.beat_last_tick, "beat_late": health.beat_late,
            "jobs": {h.job.name: {"last_succeeded": h.last_succeeded, "late": h.late} for h in health.jobs}}


def csrf_failure(request, reason=""):
    return render(request, "403.html", {"message": "Your form expired or came from another site. Reload the page "
                                                   "and try again."}, status=403)


def robots(request):
    return HttpResponse("User-agent: *\nDisallow: /\n", content_type="text/plain")


# --- notifications ------------------------------------------------------------------------------------


@login_required
@require_GET
def notification_list(request):
    """The signed-in user's own notifications, newest first; nobody sees anyone else's."""
    return render(request, "portal/notifications.html", {
        "page": page(request, notifications.notifications_for(request.user)),
    })


@login_required
@require_POST
def notification_read(request):
    """Mark the posted ``id`` values read, or every unread one when none is posted."""
    posted = request.POST.getlist("id")
    ids = None
    if posted:  # anything that is not a plain id (or would overflow a bigint) matches nothing rather than erroring
        ids = [int(value) for value in posted if value.isascii() and value.isdigit() and len(value) < 19]
    changed = notifications.notifications_mark_read(actor=request.user, notification_ids=ids)
    if changed:
        messages.success(request, f"{changed} notification{'s' if changed != 1 else ''} marked read.")
    return redirect("notification-list")
