"""Access review pages: campaigns, my reviews, decisions and results."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch, Q
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from governance.reviews import applying, campaigns, decisions, export, permissions, selectors
from governance.reviews.choices import (
    ReviewInstanceStatus,
)
from governance.reviews.forms import ReviewForm
from governance.reviews.models import AccessReview, ReviewDecision, ReviewInstance, ReviewItem
from portal import rbac, viewutils
from portal.viewutils import act, page


def _campaign(request, campaign_id: int) -> AccessReview:
    campaign = selectors.reviews_visible_to(request.user).filter(pk=campaign_id).first()
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
    shown = page(request, selectors.campaigns_page_queryset(request.user))
    progress = selectors.instances_with_progress(shown.object_list)
    workspace = request.workspace
    return render(request, "governance/reviews/review_list.html", {
        "page": shown, "rows": [(c, progress.get(c.pk)) for c in shown.object_list],
        "inbox": selectors.inbox(request.user),
        "can_create": workspace is not None and rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
    })


@login_required
@require_http_methods(["GET", "POST"])
def review_create(request):
    workspace = viewutils.current_workspace(request)
    rbac.require(rbac.has_workspace_perm(request.user, workspace, rbac.MANAGE_MEMBERS),
                 "Only the workspace's owners create access reviews.")
    form = ReviewForm(request.POST or None, workspace=workspace, initial={"starts_at": timezone.now()})
    if request.method == "POST" and form.is_valid():
        try:
            campaign = campaigns.review_create(actor=request.user, workspace=workspace, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Access review {campaign.name} created.")
            return redirect("review-detail", campaign_id=campaign.pk)
    return render(request, "governance/reviews/review_form.html", {"form": form, "workspace": workspace})


@login_required
@require_GET
def review_detail(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instances = campaign.instances.annotate(
        total=Count("items", distinct=True),
        decided=Count("items", filter=Q(items__decisions__isnull=False), distinct=True))[:24]
    current = next((i for i in instances if i.status == ReviewInstanceStatus.OPEN), None)
    return render(request, "governance/reviews/review_detail.html", {
        "campaign": campaign, "instances": instances, "current": current,
        "packages": campaign.packages.all(), "named": campaign.named_reviewers.all(),
        "can_manage": selectors.may_manage(request.user, campaign),
        "my_open": selectors.items_of_reviewer(request.user, current).count() if current else 0,
    })


@login_required
@require_GET
def review_mine(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instance = selectors.open_instance(campaign)
    items = page(request, selectors.items_of_reviewer(request.user, instance)) if instance else None
    if items is not None:
        items.object_list = selectors.with_credential_types(items.object_list)
    return render(request, "governance/reviews/review_mine.html", {
        "campaign": campaign, "instance": instance, "page": items,
        "open_count": sum(1 for i in items.object_list if not i.mine) if items else 0,
        "decisions": [(k, v) for k, v in ReviewDecision._meta.get_field("decision").choices],
    })


@login_required
@require_POST
def review_decide(request, item_id: int):
    item = ReviewItem.objects.filter(pk=item_id, instance__campaign__in=selectors.reviews_visible_to(request.user)) \
        .select_related("instance", "agent").first()
    if item is None:
        raise Http404("No such review item.")
    act(request, decisions.review_decide, lambda d: f"{item.agent.name}: {d.get_decision_display().lower()}.",
        item=item, decision=request.POST.get("decision", ""), justification=request.POST.get("justification", ""))
    return redirect(f"{reverse('review-mine', args=[item.instance.campaign_id])}#item-{item.pk}")


@login_required
@require_POST
def review_permissions_decide(request, item_id: int):
    """Keep or remove one permission of an item, or accept the item's per-permission recommendation."""
    item = ReviewItem.objects.filter(pk=item_id, instance__campaign__in=selectors.reviews_visible_to(request.user)) \
        .select_related("instance", "agent").first()
    if item is None:
        raise Http404("No such review item.")
    if request.POST.get("accept_advice"):
        act(request, permissions.review_permissions_accept_advice,
            lambda n: f"{item.agent.name}: the recommendation per permission accepted ({n} decision(s) changed).",
            item=item)
    else:
        chosen = request.POST.get("permission", "")
        permission = item.permissions.filter(pk=chosen).first() if chosen.isdigit() else None
        if permission is None:
            raise Http404("No such permission on this item.")
        act(request, permissions.review_permission_decide,
            lambda p: f"{item.agent.name}: {p.get_decision_display().lower()} {p.permission}.",
            permission=permission, decision=request.POST.get("decision", ""))
    return redirect(f"{reverse('review-mine', args=[item.instance.campaign_id])}#item-{item.pk}")


@login_required
@require_POST
def review_accept(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    instance = selectors.open_instance(campaign)
    if instance is None:
        messages.error(request, "This review has no open instance.")
    else:
        act(request, decisions.review_accept_recommendations,
            lambda n: f"Accepted the recommendation for {n} item(s)." if n else "Nothing left to decide.",
            instance=instance)
    return redirect("review-mine", campaign_id=campaign.pk)


@login_required
@require_POST
def review_close(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(selectors.may_manage(request.user, campaign), "Only the workspace's owners close a review early.")
    instance = selectors.open_instance(campaign)
    if instance is None:
        messages.error(request, "This review has no open instance.")
        return redirect("review-detail", campaign_id=campaign.pk)
    closed = act(request, applying.review_instance_close, lambda i: "Review closed early.", instance=instance)
    if closed is not None and campaign.auto_apply:
        applied = applying.review_instance_apply(instance=closed)
        messages.success(request, f"Results applied: {applied['removed']} access(es) removed.")
    return redirect(f"{reverse('review-results', args=[campaign.pk])}?instance={instance.pk}")


@login_required
@require_GET
def review_results(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(selectors.may_manage(request.user, campaign), "Only the workspace's owners read a review's results.")
    instance = _results_instance(request, campaign)
    items = None
    if instance is not None:
        items = page(request, ReviewItem.objects.filter(instance=instance).select_related("agent").prefetch_related(
            Prefetch("decisions", queryset=ReviewDecision.objects.select_related("reviewer")),
            "permissions").order_by("pk"))
        items.object_list = selectors.with_credential_types(items.object_list)
    return render(request, "governance/reviews/review_results.html", {
        "campaign": campaign, "instance": instance, "page": items,
        "counts": selectors.results(instance) if instance else None,
        "instances": campaign.instances.order_by("-starts_at")[:24],
        "query": f"instance={instance.pk}" if instance else "",
    })


@login_required
@require_GET
def review_results_csv(request, campaign_id: int):
    campaign = _campaign(request, campaign_id)
    rbac.require(selectors.may_manage(request.user, campaign), "Only the workspace's owners read a review's results.")
    instance = _results_instance(request, campaign)
    if instance is None:
        raise Http404("This review has no instance yet.")
    response = StreamingHttpResponse(export.results_csv_stream(instance), content_type="text/csv")
    response["Content-Disposition"] = (f'attachment; filename="review-{campaign.pk}-'
                                       f'{instance.starts_at:%Y%m%d}.csv"')
    return response
