"""Access package and assignment pages."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import selectors as agent_selectors
from governance.access import services as access_packages
from governance.access.ends import assignment_ends
from governance.access.forms import AssignmentRequestForm, ExtendForm, PackageForm
from governance.access.models import AccessPackage, Assignment
from portal import rbac, viewutils
from portal.timefmt import when
from portal.viewutils import act


def _package(request, package_id: int) -> AccessPackage:
    package = AccessPackage.objects.filter(pk=package_id, workspace__in=rbac.workspaces_visible_to(request.user)) \
        .select_related("policy", "workspace", "removed_by").first()
    if package is None:
        raise Http404("No such access package.")
    return package


def _assignment(request, assignment_id: int) -> Assignment:
    assignment = access_packages.assignments_visible_to(request.user).filter(pk=assignment_id).first()
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment


@login_required
@require_GET
def package_list(request):
    workspace = viewutils.current_workspace(request)
    # Removed packages keep their records; the list shows the others unless asked (docs/design.md, R29).
    show_removed = request.GET.get("show") == "removed"
    packages = AccessPackage.objects.filter(workspace=workspace).select_related("policy").prefetch_related(
        "permissions").annotate(active=Count("assignments", filter=Q(assignments__status="active")))
    if not show_removed:
        packages = packages.filter(removed_at__isnull=True)
    return render(request, "governance/access/package_list.html", {
        "workspace": workspace, "packages": packages, "show_removed": show_removed,
        "can_manage": rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
        "inbox": access_packages.approver_inbox(request.user),
        "mine": access_packages.assignments_visible_to(request.user).filter(
            package__workspace=workspace).order_by("-requested_at")[:50],
    })


@login_required
@require_http_methods(["GET", "POST"])
def package_edit(request, package_id: int | None = None):
    workspace = viewutils.current_workspace(request)
    package = _package(request, package_id) if package_id else None
    if package is not None:
        workspace = package.workspace
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only the workspace's owners manage its access packages.")
    if package is not None and package.removed_at is not None:
        messages.error(request, f"{package.name} was removed: it can no longer be edited.")
        return redirect("package-detail", package_id=package.pk)
    initial = {}
    if package is not None:
        rules = package.policy
        initial = {"name": package.name, "description": package.description,
                   "permissions": package.permissions.all(), "incompatible_with": package.incompatible_with.all(),
                   **{k: getattr(rules, k) for k in access_packages.POLICY_FIELDS},
                   "approvers": "; ".join(u.username for u in rules.approvers.all()),
                   "second_approvers": "; ".join(u.username for u in rules.second_approvers.all())}
    form = PackageForm(request.POST or None, initial=initial, workspace=workspace, package=package)
    if request.method == "POST" and form.is_valid():
        try:
            saved = access_packages.package_save(actor=request.user, workspace=workspace, package=package,
                                                 **form.split())
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Access package {saved.name} saved.")
            return redirect("package-detail", package_id=saved.pk)
    return render(request, "governance/access/package_form.html", {"form": form, "package": package,
                                                            "workspace": workspace})


@login_required
@require_http_methods(["GET", "POST"])
def package_detail(request, package_id: int):
    package = _package(request, package_id)
    form = AssignmentRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agent = agent_selectors.agent_list(request.user, package.workspace,
                                           {"q": ""}).filter(name=form.cleaned_data["agent_name"]).first()
        if agent is None:
            form.add_error("agent_name", "No agent you can see has that name in this workspace.")
        else:
            try:
                assignment = access_packages.assignment_request(
                    actor=request.user, package=package, agent=agent, hours=form.cleaned_data["hours"],
                    justification=form.cleaned_data["justification"])
            except (ValidationError, PermissionDenied) as error:
                form.add_error(None, error.messages if isinstance(error, ValidationError) else str(error))
            else:
                messages.success(request, f"{package.name} for {agent.name}: "
                                          f"{assignment.get_status_display().lower()}.")
                return redirect("assignment-detail", assignment_id=assignment.pk)
    return render(request, "governance/access/package_detail.html", {
        "package": package, "policy": package.policy, "form": form,
        "assignments": package.assignments.select_related("agent", "requested_by").order_by("-requested_at")[:100],
        "can_manage": rbac.has_workspace_perm(request.user, package.workspace, rbac.MANAGE_MEMBERS),
        "removed": package.removed_at is not None,
    })


@login_required
@require_GET
def assignment_detail(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    return render(request, "governance/access/assignment_detail.html", {
        "assignment": assignment, "permissions": assignment.package.permissions.all(),
        "can_decide": request.user.pk in access_packages.approvers_for(assignment) and (
            assignment.status == "pending" or assignment.extension_until is not None),
        "can_revoke": access_packages.may_manage_assignment(request.user, assignment)
        and assignment.status in ("pending", "active"),
        "can_extend": assignment.is_active() and assignment.package.policy.allow_extension
        and access_packages.may_request(request.user, assignment.package, assignment.agent),
        "extend_form": ExtendForm(),
    })


@login_required
@require_POST
def assignment_approve(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    act(request, access_packages.assignment_decide, lambda a: f"{a.package.name}: {a.get_status_display().lower()}.",
        assignment=assignment, approve=True)
    return redirect("assignment-detail", assignment_id=assignment.pk)


@login_required
@require_POST
def assignment_deny(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    act(request, access_packages.assignment_decide, lambda a: f"{a.package.name}: denied.", assignment=assignment,
        approve=False, reason=request.POST.get("reason", ""))
    return redirect("assignment-detail", assignment_id=assignment.pk)


@login_required
@require_POST
def assignment_extend(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    form = ExtendForm(request.POST)
    if form.is_valid():
        act(request, access_packages.assignment_extend,
            lambda a: "Extension requested." if a.extension_until else f"Extended until {when(assignment_ends(a))}.",
            assignment=assignment, hours=form.cleaned_data["hours"])
    else:
        messages.error(request, "Give the number of hours.")
    return redirect("assignment-detail", assignment_id=assignment.pk)


@login_required
@require_POST
def assignment_revoke(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    act(request, access_packages.assignment_revoke, lambda a: f"{a.package.name} revoked for {a.agent.name}.",
        assignment=assignment, reason="revoked early")
    return redirect("assignment-detail", assignment_id=assignment.pk)


@login_required
@require_GET
def expiring_soon(request):
    return render(request, "governance/access/expiring.html", {
        "assignments": access_packages.expiring_for_sponsor(request.user)})
