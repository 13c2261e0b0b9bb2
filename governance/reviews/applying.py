"""Closing an access review instance and applying its results (R19).

When the instance closes, each item is resolved — a denial by any reviewer removes, otherwise an approval keeps,
otherwise the campaign's no-response default — and, if the campaign says so, denials are carried out through the
same services as a manual action (``access_packages.assignments_revoke_batch`` for package scopes,
``registry.agent_disable`` for agent scopes), each audited, then the permissions reviewers removed (R32)."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.urls import reverse
from django.utils import timezone

from agents import registry
from agents.choices import AgentStatus
from governance.access import services as access_packages
from governance.reviews.choices import (
    PermissionDecision,
    ReviewDecisionKind,
    ReviewInstanceStatus,
    ReviewNoResponse,
    ReviewScope,
)
from governance.reviews.models import (
    AccessReview,
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
    ReviewItemPermission,
)
from governance.reviews.permissions import apply_removed_permissions
from governance.reviews.selectors import BATCH, require_manager, results
from portal import audit, notifications
from portal.models import User


# --- closing and applying ----------------------------------------------------------------------------------------
def _resolve(instance: ReviewInstance) -> None:
    """Each item's final decision in four UPDATEs: a denial wins, then an approval, then the no-response default."""
    items = ReviewItem.objects.filter(instance=instance)
    decided = ReviewDecision.objects.filter(item=OuterRef("pk"))
    items.filter(Exists(decided.filter(decision=ReviewDecisionKind.DENY))).update(
        final_decision=ReviewDecisionKind.DENY, final_source="reviewer")
    items.filter(final_decision="").filter(Exists(decided.filter(decision=ReviewDecisionKind.APPROVE))).update(
        final_decision=ReviewDecisionKind.APPROVE, final_source="reviewer")
    rest = items.filter(final_decision="")
    default = instance.campaign.no_response
    if default == ReviewNoResponse.KEEP:
        rest.update(final_decision=ReviewDecisionKind.APPROVE, final_source="default")
    elif default == ReviewNoResponse.REMOVE:
        rest.update(final_decision=ReviewDecisionKind.DENY, final_source="default")
    else:
        rest.update(final_decision=F("recommendation"), final_source="default")


@transaction.atomic
def review_instance_close(*, actor: User | None, instance: ReviewInstance,
                          now: datetime | None = None) -> ReviewInstance:
    """End an instance — at its end (the job) or early (an owner) — and resolve every item's final decision.

    The status moves open → closed under a row lock, so two workers or two clicks close it once.
    """
    now = now or timezone.now()
    instance = ReviewInstance.objects.select_for_update(of=("self",)).select_related(
        "campaign__workspace").get(pk=instance.pk)
    require_manager(actor, instance.campaign.workspace)
    if instance.status != ReviewInstanceStatus.OPEN:
        raise ValidationError("This review is already closed.", code="already_decided")
    _resolve(instance)
    instance.status, instance.closed_at, instance.closed_by = ReviewInstanceStatus.CLOSED, now, actor
    instance.save(update_fields=["status", "closed_at", "closed_by"])
    counts = results(instance)
    audit.record(actor=actor, action="review.close", target=instance, workspace=instance.campaign.workspace,
                 before={"status": ReviewInstanceStatus.OPEN},
                 after={"status": instance.status, "early": now < instance.ends_at, "items": counts["total"],
                        "kept": counts["kept"], "removed": counts["removed"], "by_default": counts["by_default"]})
    return instance


def review_instance_apply(*, instance: ReviewInstance) -> dict:
    """Carry out a closed instance's denials through the services, in batches, exactly once (R19).

    Items are locked with SKIP LOCKED and marked ``applied_at`` in the batch's transaction, so two workers share
    the work and a rerun finds nothing left. Package scopes revoke with ``assignments_revoke_batch`` (the rules
    of ``assignment_revoke``, one audit event per assignment); agent scopes disable with ``agent_disable``.
    The instance then moves closed → applied under its row lock.
    """
    campaign = AccessReview.objects.select_related("workspace").get(pk=instance.campaign_id)
    counts = {"removed": 0, "already_ended": 0}
    if not campaign.auto_apply:
        return counts
    reason = f"access review {campaign.name}: denied"
    while True:
        with transaction.atomic():
            batch = list(ReviewItem.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(instance_id=instance.pk, instance__status=ReviewInstanceStatus.CLOSED,
                                 final_decision=ReviewDecisionKind.DENY, applied_at__isnull=True)
                         .select_related("agent").order_by("pk")[:BATCH])
            if not batch:
                break
            done: set[int] = set()
            if campaign.scope_kind == ReviewScope.PACKAGES:
                revoked = set(access_packages.assignments_revoke_batch(
                    actor=None, assignment_ids=[i.assignment_id for i in batch], reason=reason))
                done = {i.pk for i in batch if i.assignment_id in revoked}
            else:
                for item in batch:
                    if item.agent.status != AgentStatus.ACTIVE:
                        continue
                    registry.agent_disable(actor=None, agent=item.agent, reason=reason)
                    done.add(item.pk)
            now = timezone.now()
            result = "revoked" if campaign.scope_kind == ReviewScope.PACKAGES else "disabled"
            ReviewItem.objects.filter(pk__in=done).update(applied_at=now, applied_result=result)
            ReviewItem.objects.filter(pk__in=[i.pk for i in batch if i.pk not in done]).update(
                applied_at=now, applied_result="already ended")
            counts["removed"] += len(done)
            counts["already_ended"] += len(batch) - len(done)
    removed, already = apply_removed_permissions(instance, campaign)
    counts["removed"] += removed
    counts["already_ended"] += already
    with transaction.atomic():
        locked = ReviewInstance.objects.select_for_update(of=("self",)).get(pk=instance.pk)
        left = ReviewItem.objects.filter(instance=locked, final_decision=ReviewDecisionKind.DENY,
                                         applied_at__isnull=True).exists() or ReviewItemPermission.objects.filter(
            item__instance=locked, decision=PermissionDecision.REMOVE, applied_at__isnull=True).exists()
        if locked.status == ReviewInstanceStatus.CLOSED and not left:
            locked.status, locked.applied_at = ReviewInstanceStatus.APPLIED, timezone.now()
            locked.save(update_fields=["status", "applied_at"])
            audit.record(actor=None, action="review.apply", target=locked, workspace=campaign.workspace,
                         before={"status": ReviewInstanceStatus.CLOSED},
                         after={"status": locked.status, **counts})
            if campaign.created_by is not None:
                notifications.notify(recipients=[campaign.created_by], subject=f"Access review {campaign.name}: "
                                     f"results applied", body=f"{counts['removed']} access(es) removed.",
                                     link=reverse("review-results", args=[campaign.pk]))
    return counts
