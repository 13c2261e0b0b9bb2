"""Access review campaigns (R19): creation by the workspace's owners and their periods.

A campaign (``AccessReview``) runs once or every week, month or quarter; each period is a ``ReviewInstance``
opened by ``governance.reviews.opening`` (at once when the first period has begun, otherwise by the job in
``governance.reviews.runner``)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.access.models import AccessPackage
from governance.reviews.choices import (
    ReviewerKind,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
)
from governance.reviews.models import (
    AccessReview,
)
from governance.reviews.opening import review_instance_open
from governance.reviews.selectors import require_manager
from portal import audit
from portal.choices import UserKind
from portal.models import User, Workspace

MONTHS_PER_PERIOD = {ReviewRecurrence.MONTHLY: 1, ReviewRecurrence.QUARTERLY: 3}
MAX_DAYS = {ReviewRecurrence.WEEKLY: 7, ReviewRecurrence.MONTHLY: 28, ReviewRecurrence.QUARTERLY: 90}


# --- campaigns ---------------------------------------------------------------------------------------------------
def _human_reviewers(users: Iterable[User], what: str) -> list[User]:
    users = list(users)
    bad = sorted(u.username for u in users if not u.is_active or u.kind != UserKind.HUMAN)
    if bad:
        raise ValidationError(f"{what} must be active people: {', '.join(bad)}.")
    return users


@transaction.atomic
def review_create(*, actor: User | None, workspace: Workspace, name: str, scope_kind: str,
                  reviewer_kind: str, starts_at: datetime, duration_days: int,
                  recurrence: str = ReviewRecurrence.ONCE, packages: Iterable[AccessPackage] = (),
                  named_reviewers: Iterable[User] = (), fallback_reviewer: User | None = None,
                  auto_apply: bool = True, no_response: str = ReviewNoResponse.RECOMMENDATION,
                  description: str = "", now: datetime | None = None) -> AccessReview:
    """Create a campaign (owners of the workspace, R19); a campaign whose first period has begun opens at once."""
    require_manager(actor, workspace)
    now = now or timezone.now()
    name = name.strip()
    problems = []
    if not name:
        problems.append("Give the review a name.")
    elif AccessReview.objects.filter(workspace=workspace, name=name).exists():
        problems.append(f"A review called '{name}' already exists in {workspace.name}.")
    if duration_days is None or duration_days < 1:
        problems.append("A review lasts at least one day.")
    elif recurrence in MAX_DAYS and duration_days > MAX_DAYS[recurrence]:
        problems.append(f"A {recurrence} review lasts at most {MAX_DAYS[recurrence]} days, so periods never overlap.")
    packages = list(packages)
    if scope_kind == ReviewScope.PACKAGES and not packages:
        problems.append("Choose the access packages whose assignments are reviewed.")
    if any(p.workspace_id != workspace.pk for p in packages):
        problems.append("The packages must belong to the review's workspace.")
    # Read from the database, not from the objects passed: a removed package is kept for its history only
    # (docs/design.md, R29) and nothing is assigned from it any more.
    removed = sorted(AccessPackage.objects.filter(pk__in=[p.pk for p in packages], removed_at__isnull=False)
                     .values_list("name", flat=True)) if packages else []
    if removed:
        problems.append(f"Removed access packages cannot be reviewed: {', '.join(removed)}.")
    named = _human_reviewers(named_reviewers, "Named reviewers")
    if reviewer_kind == ReviewerKind.NAMED and not named:
        problems.append("Name at least one reviewer.")
    if fallback_reviewer is not None:
        _human_reviewers([fallback_reviewer], "The fallback reviewer")
    if scope_kind not in ReviewScope.values or reviewer_kind not in ReviewerKind.values \
            or recurrence not in ReviewRecurrence.values or no_response not in ReviewNoResponse.values:
        problems.append("Choose the scope, reviewers, recurrence and no-response default from the lists.")
    if problems:
        raise ValidationError(problems)
    campaign = AccessReview.objects.create(
        workspace=workspace, name=name, description=description, scope_kind=scope_kind, reviewer_kind=reviewer_kind,
        fallback_reviewer=fallback_reviewer, recurrence=recurrence, starts_at=starts_at, duration_days=duration_days,
        auto_apply=auto_apply, no_response=no_response, created_by=actor)
    campaign.packages.set(packages if scope_kind == ReviewScope.PACKAGES else [])
    campaign.named_reviewers.set(named if reviewer_kind == ReviewerKind.NAMED else [])
    audit.record(actor=actor, action="review.create", target=campaign, workspace=workspace, after=_snapshot(campaign))
    start = current_period(campaign, now)
    if start is not None:
        review_instance_open(campaign=campaign, starts_at=start, now=now, actor=actor)
    return campaign


def _snapshot(campaign: AccessReview) -> dict:
    return {"name": campaign.name, "scope": campaign.scope_kind, "reviewers": campaign.reviewer_kind,
            "packages": sorted(p.name for p in campaign.packages.all()),
            "named_reviewers": sorted(u.username for u in campaign.named_reviewers.all()),
            "fallback_reviewer": campaign.fallback_reviewer.username if campaign.fallback_reviewer else None,
            "recurrence": campaign.recurrence, "starts_at": campaign.starts_at,
            "duration_days": campaign.duration_days, "auto_apply": campaign.auto_apply,
            "no_response": campaign.no_response}


# --- periods -----------------------------------------------------------------------------------------------------
def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def period_start(campaign: AccessReview, index: int) -> datetime:
    if campaign.recurrence == ReviewRecurrence.WEEKLY:
        return campaign.starts_at + timedelta(weeks=index)
    if campaign.recurrence in MONTHS_PER_PERIOD:
        return _add_months(campaign.starts_at, index * MONTHS_PER_PERIOD[campaign.recurrence])
    return campaign.starts_at


def current_period(campaign: AccessReview, now: datetime) -> datetime | None:
    """The start of the campaign's period running at ``now``; None before the start, between periods, or after a
    one-off review's end. Only the running period opens: a period missed entirely is not reviewed late."""
    if now < campaign.starts_at:
        return None
    if campaign.recurrence == ReviewRecurrence.WEEKLY:
        index = (now - campaign.starts_at) // timedelta(weeks=1)
    elif campaign.recurrence in MONTHS_PER_PERIOD:
        step = MONTHS_PER_PERIOD[campaign.recurrence]
        index = ((now.year - campaign.starts_at.year) * 12 + now.month - campaign.starts_at.month) // step
        if period_start(campaign, index) > now:
            index -= 1
    else:
        index = 0
    start = period_start(campaign, index)
    return start if start + timedelta(days=campaign.duration_days) > now else None
