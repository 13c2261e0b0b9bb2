"""Reviewers' decisions on access review items (R19): approve, deny (with a justification) or don't know, changeable
until the instance ends; nobody reviews their own access."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from governance.reviews.choices import (
    ReviewDecisionKind,
    ReviewInstanceStatus,
)
from governance.reviews.models import (
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
    ReviewItemReviewer,
)
from governance.reviews.selectors import BATCH, decided_by, subject_ids
from portal import audit
from portal.models import User


# --- decisions ---------------------------------------------------------------------------------------------------
def _decidable(instance: ReviewInstance, now: datetime) -> None:
    if instance.status != ReviewInstanceStatus.OPEN or instance.ends_at <= now:
        raise ValidationError("This review has ended; its decisions can no longer change.", code="already_decided")


def require_reviewer(actor: User, item: ReviewItem) -> None:
    """Only the item's reviewers decide, never about their own access, and only while its review is open."""
    if actor.pk in subject_ids(item.agent):
        raise PermissionDenied("You cannot review your own access.")
    if not ReviewItemReviewer.objects.filter(item=item, reviewer=actor).exists():
        raise PermissionDenied("You are not a reviewer of this item.")
    _decidable(item.instance, timezone.now())


def item_to_decide(actor: User, item: ReviewItem) -> ReviewItem:
    """The item, locked, once ``require_reviewer`` lets the actor decide on it."""
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related(
        "instance__campaign__workspace", "agent").get(pk=item.pk)
    require_reviewer(actor, item)
    return item


@transaction.atomic
def review_decide(*, actor: User, item: ReviewItem, decision: str, justification: str = "") -> ReviewDecision:
    """A reviewer approves, denies (with a justification) or doesn't know; they may change it until the end.

    Nobody decides about their own access (the user the agent runs as, or its agent user).
    """
    item = item_to_decide(actor, item)
    if decision not in ReviewDecisionKind.values:
        raise ValidationError("Decide approve, deny or don't know.")
    justification = justification.strip()
    if decision == ReviewDecisionKind.DENY and not justification:
        raise ValidationError("Give a justification for a denial.")
    existing = ReviewDecision.objects.filter(item=item, reviewer=actor).first()
    before = {"decision": existing.decision, "justification": existing.justification} if existing else None
    if existing is None:
        existing = ReviewDecision.objects.create(item=item, reviewer=actor, decision=decision,
                                                 justification=justification)
    else:
        existing.decision, existing.justification, existing.decided_at = decision, justification, timezone.now()
        existing.save(update_fields=["decision", "justification", "decided_at"])
    audit.record(actor=actor, action="review.decision_change" if before else "review.decide", target=item,
                 workspace=item.instance.campaign.workspace, before=before,
                 after={"decision": decision, "justification": justification, "agent": item.agent.name,
                        "access": item.access})
    return existing


@transaction.atomic
def review_accept_recommendations(*, actor: User, instance: ReviewInstance) -> int:
    """Decide each of the actor's undecided items as recommended (one audit event each). Returns how many."""
    instance = ReviewInstance.objects.select_for_update(of=("self",)).select_related("campaign__workspace").get(
        pk=instance.pk)
    _decidable(instance, timezone.now())
    mine = ReviewItemReviewer.objects.filter(reviewer=actor, instance=instance).exclude(decided_by(actor))
    items = list(ReviewItem.objects.filter(pk__in=mine.values("item_id"))
                 .exclude(agent__run_as_user=actor).exclude(agent__identity__agent_user__user=actor)
                 .select_related("agent").order_by("pk"))
    now = timezone.now()
    ReviewDecision.objects.bulk_create(
        [ReviewDecision(item=item, reviewer=actor, decision=item.recommendation, decided_at=now,
                        justification=f"Accepted the recommendation: {item.recommendation_reason}")
         for item in items], batch_size=BATCH)
    audit.record_many(actor=actor, changes=[
        audit.Change("review.decide", item, instance.campaign.workspace,
                     after={"decision": item.recommendation, "accepted_recommendation": True,
                            "agent": item.agent.name, "access": item.access})
        for item in items])
    return len(items)
