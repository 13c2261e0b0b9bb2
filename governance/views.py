"""Governance pages: the partner-approval queue and review page (R14–R16)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Prefetch, Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import policy as agent_policy
from agents import selectors as agent_selectors
from governance import access_packages, approvals, conditional_access, reviews
from governance.choices import (
    ApprovalStatus,
    ReviewerKind,
    ReviewInstanceStatus,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
)
from governance.forms import AssignmentRequestForm, ExtendForm, PackageForm, PolicyForm, UsernameListField, WhatIfForm
from governance.models import (
    AccessPackage,
    AccessReview,
    Assignment,
    ConditionalAccessPolicy,
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
)
from portal import rbac
from portal.forms import StyledForm, UsernameField
from portal.viewutils import act, flash_errors, page

TABS = {
    "pending": [ApprovalStatus.PENDING],
    "decided": [ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.WITHDRAWN],
    "expired": [ApprovalStatus.EXPIRED],
}


def _visible_request(user, request_id: int):
    request = approvals.requests_visible_to(user).filter(pk=request_id).first()
    if request is None:
        raise Http404("No such approval request.")
    return request


@login_required
@require_GET
def approval_list(request):
    tab = request.GET.get("tab", "pending")
    statuses = TABS.get(tab, TABS["pending"])
    visible = approvals.requests_visible_to(request.user)
    return render(request, "governance/approval_list.html", {
        "page": page(request, visible.filter(status__in=statuses)), "tab": tab, "query": f"tab={tab}",
        "is_ga": approvals.is_global_administrator(request.user),
        "counts": {name: visible.filter(status__in=s).count() for name, s in TABS.items()},
    })


@login_required
@require_GET
def approval_detail(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    previous = approvals.previous_approved(approval)
    current = set(approval.permissions)
    before = set(previous.permissions) if previous else set()
    permissions = list(approval.blueprint.required_permissions.order_by("product", "name"))
    return render(request, "governance/approval_detail.html", {
        "approval": approval, "permissions": permissions, "previous": previous,
        "added": sorted(current - before) if previous else [], "removed": sorted(before - current),
        "products": approvals.microsoft_data_products(approval.blueprint),
        "can_decide": approvals.is_global_administrator(request.user) and approval.requester_id != request.user.pk
        and approval.status == ApprovalStatus.PENDING,
        "is_requester": approval.requester_id == request.user.pk,
    })


@login_required
@require_POST
def approval_approve(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_decide, lambda r: f"Approved request #{r.pk}.", approval=approval, approve=True)
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_POST
def approval_deny(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_decide, lambda r: f"Denied request #{r.pk}.", approval=approval, approve=False,
        reason=request.POST.get("reason", ""))
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_POST
def approval_withdraw(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_withdraw, lambda r: f"Request #{r.pk} withdrawn.", approval=approval)
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_http_methods(["GET", "POST"])
def approval_create(request, agent_id: int):
    """Ask again for a draft agent (after a denial, withdrawal or expiry)."""
    agent = agent_selectors.agent_get(request.user, agent_id)
    if request.method == "POST":
        try:
            created = approvals.approval_request_create(actor=request.user, agent=agent,
                                                        justification=request.POST.get("justification", ""))
        except ValidationError as error:
            flash_errors(request, error)
        else:
            messages.success(request, f"Approval requested (#{created.pk}). Send the link to a Global Administrator.")
            return redirect("approval-detail", request_id=created.pk)
    return render(request, "governance/approval_create.html", {"agent": agent})


# --- access packages (R17, R18) ----------------------------------------------------------------------------------


def _workspace(request):
    if request.workspace is None:
        raise Http404("You are not a member of any workspace.")
    return request.workspace


def _package(request, package_id: int) -> AccessPackage:
    package = AccessPackage.objects.filter(pk=package_id, workspace__in=rbac.workspaces_visible_to(request.user)) \
        .select_related("policy", "workspace").first()
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
    workspace = _workspace(request)
    packages = AccessPackage.objects.filter(workspace=workspace).select_related("policy").prefetch_related(
        "permissions").annotate(active=Count("assignments", filter=Q(assignments__status="active")))
    return render(request, "governance/package_list.html", {
        "workspace": workspace, "packages": packages,
        "can_manage": rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
        "inbox": access_packages.approver_inbox(request.user),
        "mine": access_packages.assignments_visible_to(request.user).filter(
            package__workspace=workspace).order_by("-requested_at")[:50],
    })


@login_required
@require_http_methods(["GET", "POST"])
def package_edit(request, package_id: int | None = None):
    workspace = _workspace(request)
    package = _package(request, package_id) if package_id else None
    if package is not None:
        workspace = package.workspace
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only the workspace's owners manage its access packages.")
    initial = {}
    if package is not None:
        rules = package.policy
        initial = {"name": package.name, "description": package.description,
                   "permissions": package.permissions.all(), "incompatible_with": package.incompatible_with.all(),
                   **{k: getattr(rules, k) for k in access_packages.POLICY_FIELDS},
                   "approvers": ", ".join(u.username for u in rules.approvers.all()),
                   "second_approvers": ", ".join(u.username for u in rules.second_approvers.all())}
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
    return render(request, "governance/package_form.html", {"form": form, "package": package,
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
    return render(request, "governance/package_detail.html", {
        "package": package, "policy": package.policy, "form": form,
        "assignments": package.assignments.select_related("agent", "requested_by").order_by("-requested_at")[:100],
        "can_manage": rbac.has_workspace_perm(request.user, package.workspace, rbac.MANAGE_MEMBERS),
    })


@login_required
@require_GET
def assignment_detail(request, assignment_id: int):
    assignment = _assignment(request, assignment_id)
    return render(request, "governance/assignment_detail.html", {
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
            lambda a: "Extension requested." if a.extension_until else f"Extended until {a.expires_at:%Y-%m-%d %H:%M}.",
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
    return render(request, "governance/expiring.html", {
        "assignments": access_packages.expiring_for_sponsor(request.user)})


# --- access reviews (R19) ------------------------------------------------------------------------------------------


class ReviewForm(StyledForm):
    """A new campaign; the rules (owners only, periods that never overlap, …) live in ``reviews.review_create``."""

    name = forms.CharField(max_length=150)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    scope_kind = forms.ChoiceField(choices=ReviewScope.choices, label="What is reviewed")
    packages = forms.ModelMultipleChoiceField(queryset=AccessPackage.objects.none(), required=False,
                                              label="Access packages (for a package review)")
    reviewer_kind = forms.ChoiceField(choices=ReviewerKind.choices, label="Reviewers")
    named_reviewers = UsernameListField(required=False, label="Named reviewers (usernames, comma-separated)")
    fallback_reviewer = UsernameField(required=False, label="Fallback reviewer",
                                      help_text="Reviews the items nobody else may review.")
    recurrence = forms.ChoiceField(choices=ReviewRecurrence.choices)
    starts_at = forms.DateTimeField(label="Starts", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    duration_days = forms.IntegerField(min_value=1, initial=14, label="Duration in days")
    auto_apply = forms.BooleanField(required=False, initial=True, label="Apply the results automatically at the end")
    no_response = forms.ChoiceField(choices=ReviewNoResponse.choices, label="When a reviewer does not answer",
                                    initial=ReviewNoResponse.RECOMMENDATION)

    def __init__(self, *args, workspace=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["packages"].queryset = AccessPackage.objects.filter(workspace=workspace).order_by("name")
        self.fields["auto_apply"].widget.attrs["class"] = "form-check-input"


def _campaign(request, campaign_id: int) -> AccessReview:
    campaign = reviews.reviews_visible_to(request.user).filter(pk=campaign_id).first()
    if campaign is None:
        raise Http404("No such access review.")
    return campaign


def _results_instance(request, campaign: AccessReview) -> ReviewInstance | None:
    instances = campaign.instances.order_by("-starts_at")
    chosen = request.GET.get("instance", "")
    return instances.filter(pk=chosen).first() if chosen.isdigit() else instances.first()


@login_required
@require_GET
def review_list(request):
    campaigns = page(request, reviews.campaigns_page_queryset(request.user))
    progress = reviews.instances_with_progress(campaigns.object_list)
    workspace = request.workspace
    return render(request, "governance/review_list.html", {
        "page": campaigns, "rows": [(c, progress.get(c.pk)) for c in campaigns.object_list],
        "inbox": reviews.inbox(request.user),
        "can_create": workspace is not None and rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
    })


@login_required
@require_http_methods(["GET", "POST"])
def review_create(request):
    workspace = _workspace(request)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only the workspace's owners create access reviews.")
    form = ReviewForm(request.POST or None, workspace=workspace, initial={"starts_at": timezone.now()})
    if request.method == "POST" and form.is_valid():
        try:
            campaign = reviews.review_create(actor=request.user, workspace=workspace, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Access review {campaign.name} created.")
            return redirect("review-detail", campaign_id=campaign.pk)
    return render(request, "governance/review_form.html", {"form": form, "workspace": workspace})


@login_required
@require_GET
def review_detail(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instances = campaign.instances.annotate(
        total=Count("items", distinct=True),
        decided=Count("items", filter=Q(items__decisions__isnull=False), distinct=True))[:24]
    current = next((i for i in instances if i.status == ReviewInstanceStatus.OPEN), None)
    return render(request, "governance/review_detail.html", {
        "campaign": campaign, "instances": instances, "current": current,
        "packages": campaign.packages.all(), "named": campaign.named_reviewers.all(),
        "can_manage": reviews.may_manage(request.user, campaign),
        "my_open": reviews.items_of_reviewer(request.user, current).count() if current else 0,
    })


@login_required
@require_GET
def review_mine(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instance = reviews.open_instance(campaign)
    items = page(request, reviews.items_of_reviewer(request.user, instance)) if instance else None
    return render(request, "governance/review_mine.html", {
        "campaign": campaign, "instance": instance, "page": items,
        "open_count": sum(1 for i in items.object_list if not i.mine) if items else 0,
        "decisions": [(k, v) for k, v in ReviewDecision._meta.get_field("decision").choices],
    })


@login_required
@require_POST
def review_decide(request, item_id: int):
    item = ReviewItem.objects.filter(pk=item_id, instance__campaign__in=reviews.reviews_visible_to(request.user)) \
        .select_related("instance", "agent").first()
    if item is None:
        raise Http404("No such review item.")
    act(request, reviews.review_decide, lambda d: f"{item.agent.name}: {d.get_decision_display().lower()}.",
        item=item, decision=request.POST.get("decision", ""), justification=request.POST.get("justification", ""))
    return redirect(f"{reverse('review-mine', args=[item.instance.campaign_id])}#item-{item.pk}")


@login_required
@require_POST
def review_accept(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instance = reviews.open_instance(campaign)
    if instance is None:
        messages.error(request, "This review has no open instance.")
    else:
        act(request, reviews.review_accept_recommendations,
            lambda n: f"Accepted the recommendation for {n} item(s)." if n else "Nothing left to decide.",
            instance=instance)
    return redirect("review-mine", campaign_id=campaign.pk)


@login_required
@require_POST
def review_close(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(reviews.may_manage(request.user, campaign), "Only the workspace's owners close a review early.")
    instance = reviews.open_instance(campaign)
    if instance is None:
        messages.error(request, "This review has no open instance.")
        return redirect("review-detail", campaign_id=campaign.pk)
    closed = act(request, reviews.review_instance_close, lambda i: "Review closed early.", instance=instance)
    if closed is not None and campaign.auto_apply:
        applied = reviews.review_instance_apply(instance=closed)
        messages.success(request, f"Results applied: {applied['removed']} access(es) removed.")
    return redirect(f"{reverse('review-results', args=[campaign.pk])}?instance={instance.pk}")


@login_required
@require_GET
def review_results(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(reviews.may_manage(request.user, campaign), "Only the workspace's owners read a review's results.")
    instance = _results_instance(request, campaign)
    items = None
    if instance is not None:
        items = page(request, ReviewItem.objects.filter(instance=instance).select_related("agent").prefetch_related(
            Prefetch("decisions", queryset=ReviewDecision.objects.select_related("reviewer"))).order_by("pk"))
    return render(request, "governance/review_results.html", {
        "campaign": campaign, "instance": instance, "page": items,
        "counts": reviews.results(instance) if instance else None,
        "instances": campaign.instances.order_by("-starts_at")[:24],
        "query": f"instance={instance.pk}" if instance else "",
    })


@login_required
@require_GET
def review_results_csv(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(reviews.may_manage(request.user, campaign), "Only the workspace's owners read a review's results.")
    instance = _results_instance(request, campaign)
    if instance is None:
        raise Http404("This review has no instance yet.")
    response = StreamingHttpResponse(reviews.results_csv_stream(instance), content_type="text/csv")
    response["Content-Disposition"] = (f'attachment; filename="review-{campaign.pk}-'
                                       f'{instance.starts_at:%Y%m%d}.csv"')
    return response


# --- conditional access (R20) -------------------------------------------------------------------------------------


def _require_policy_reader(user) -> None:
    rbac.require(conditional_access.can_manage_policies(user) or rbac.can_view_audit(user),
                 "Conditional access is open to workspace owners, audit readers and its administrators.")


def _agents_named(user, names: str) -> list:
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    found = {a.name: a for a in agent_policy.agents_visible_to(user).filter(name__in=wanted)}
    missing = [n for n in wanted if n not in found]
    if missing:
        raise ValidationError(f"No agent you can see is called {', '.join(missing)}.")
    return [found[n] for n in wanted]


@login_required
@require_GET
def policy_list(request):
    _require_policy_reader(request.user)
    policies = ConditionalAccessPolicy.objects.prefetch_related("agents", "excluded_agents").order_by("name")
    return render(request, "governance/policy_list.html", {
        "policies": policies, "can_manage": conditional_access.can_manage_policies(request.user)})


@login_required
@require_http_methods(["GET", "POST"])
def policy_edit(request, policy_id: int | None = None):
    rbac.require(conditional_access.can_manage_policies(request.user),
                 "Only Global and Security Administrators manage conditional access.")
    policy = get_object_or_404(ConditionalAccessPolicy, pk=policy_id) if policy_id else None
    initial = {}
    if policy is not None:
        initial = {name: getattr(policy, name) for name in conditional_access.POLICY_FIELDS}
        initial.update({
            "agents": ", ".join(a.name for a in policy.agents.all()),
            "excluded_agents": ", ".join(a.name for a in policy.excluded_agents.all()),
            "attribute_rules": "\n".join(f"{r['key']} {r['op']} "
                                         f"{','.join(r['value']) if isinstance(r['value'], list) else r['value']}"
                                         for r in policy.attribute_rules),
            "ip_ranges": "\n".join(policy.ip_ranges),
            "time_windows": "\n".join(f"{','.join(str(d) for d in w['days'])} {w['start']}-{w['end']}"
                                      for w in policy.time_windows),
        })
    form = PolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            agents = _agents_named(request.user, data.pop("agents"))
            excluded = _agents_named(request.user, data.pop("excluded_agents"))
            saved = conditional_access.policy_save(actor=request.user, data=data, agents=agents,
                                                   excluded_agents=excluded, policy=policy)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Policy {saved.name} saved ({saved.get_state_display().lower()}).")
            return redirect("policy-list")
    return render(request, "governance/policy_form.html", {"form": form, "policy": policy})


@login_required
@require_GET
def policy_what_if(request):
    """Evaluate every policy for an agent and a context, with each verdict's reason and the decision (R20)."""
    _require_policy_reader(request.user)
    form = WhatIfForm(request.GET or None)
    evaluation = agent = None
    if form.is_bound and form.is_valid():
        agent = agent_policy.agents_visible_to(request.user).select_related("blueprint").filter(
            name=form.cleaned_data["agent"]).first()
        if agent is None:
            form.add_error("agent", "No agent you can see has that name.")
        else:
            evaluation = conditional_access.evaluate(
                conditional_access.agent_facts(agent),
                conditional_access.AccessContext(ip=form.cleaned_data["ip"] or None, at=form.cleaned_data["at"],
                                                 scopes=frozenset(form.cleaned_data["scopes"].split())))
    return render(request, "governance/policy_what_if.html", {"form": form, "evaluation": evaluation,
                                                              "agent": agent})
