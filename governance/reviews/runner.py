"""The ``run_access_reviews`` job (R19): opens due periods, reminds reviewers, closes ended instances and applies
their results; every step is safe to run twice."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from governance.reviews.applying import review_instance_apply, review_instance_close
from governance.reviews.campaigns import current_period
from governance.reviews.choices import (
    ReviewInstanceStatus,
)
from governance.reviews.models import (
    AccessReview,
    ReviewDecision,
    ReviewInstance,
    ReviewItemReviewer,
)
from governance.reviews.opening import review_instance_open
from governance.reviews.selectors import reviewer_link
from portal import audit, jobs, notifications
from portal.models import User

REMINDERS = ("halfway", "last_day")


# --- the job -----------------------------------------------------------------------------------------------------
def _open_reviewer_ids(instance: ReviewInstance) -> list[int]:
    return list(ReviewItemReviewer.objects.filter(instance=instance).exclude(
        Exists(ReviewDecision.objects.filter(item=OuterRef("item"), reviewer=OuterRef("reviewer"))))
        .values_list("reviewer_id", flat=True).distinct())


def _send_reminders(now: datetime) -> int:
    """Halfway and one day before the end, once each (one notice when both are crossed at once)."""
    sent = 0
    with transaction.atomic():
        due_instances = (ReviewInstance.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=ReviewInstanceStatus.OPEN, ends_at__gt=now)
                         .select_related("campaign__workspace").order_by("pk"))
        for instance in due_instances:
            moments = {"halfway": instance.starts_at + (instance.ends_at - instance.starts_at) / 2,
                       "last_day": instance.ends_at - timedelta(days=1)}
            crossed = [name for name in REMINDERS if moments[name] <= now]
            if not crossed or set(crossed) <= set(instance.reminders_sent):
                continue
            instance.reminders_sent = sorted(set(instance.reminders_sent) | set(crossed))
            instance.save(update_fields=["reminders_sent"])
            reviewers = _open_reviewer_ids(instance)
            notifications.notify(recipients=User.objects.filter(pk__in=reviewers).order_by("pk"),
                                 subject=f"Reminder: access review {instance.campaign.name} ends "
                                         f"{instance.ends_at:%Y-%m-%d %H:%M} UTC",
                                 body="Some items still wait for your decision. Undecided items follow the "
                                      f"review's default: {instance.campaign.get_no_response_display().lower()}.",
                                 link=reviewer_link(instance))
            audit.record(actor=None, action="review.reminder", target=instance,
                         workspace=instance.campaign.workspace,
                         after={"reminders_sent": instance.reminders_sent, "reviewers": len(reviewers)})
            sent += len(reviewers)
    return sent


def reviews_run(*, now: datetime | None = None) -> dict:
    """One pass of ``run_access_reviews`` at ``now``: open due periods, remind, close ended instances, apply."""
    now = now or timezone.now()
    counts = {"opened": 0, "reminders": 0, "closed": 0, "removed": 0}
    for campaign in AccessReview.objects.filter(active=True, starts_at__lte=now).order_by("pk"):
        start = current_period(campaign, now)
        if start is None or campaign.instances.filter(starts_at=start).exists():
            continue
        try:
            if review_instance_open(campaign=campaign, starts_at=start, now=now) is not None:
                counts["opened"] += 1
        except IntegrityError:  # another worker opened the same period first
            continue
    counts["reminders"] = _send_reminders(now)
    for instance in ReviewInstance.objects.filter(status=ReviewInstanceStatus.OPEN, ends_at__lte=now):
        try:
            review_instance_close(actor=None, instance=instance, now=now)
        except ValidationError:  # closed meanwhile (early, or by another worker)
            continue
        counts["closed"] += 1
    for instance in ReviewInstance.objects.filter(status=ReviewInstanceStatus.CLOSED, campaign__auto_apply=True):
        counts["removed"] += review_instance_apply(instance=instance)["removed"]
    return counts


@jobs.register("run_access_reviews", "Open due access reviews, remind reviewers, close ended ones and apply "
                                     "their results.")
def run_access_reviews() -> dict:
    return reviews_run(now=timezone.now())
