"""What governance adds to an agent's timeline (``agents.signals.timeline_lanes``): sign-ins and runs per day,
access-package assignments starting and ending, and risk detections — each lane one query, whatever the volume
(daily counts, not rows, for the busy ones). Sign-ins per UTC day, whole days, come from the usage rollup's per-day
totals plus the log's tail (``governance.usage.selectors.sign_ins_per_day``: two queries, the watermark first)."""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.db.models import Count, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from governance.access.models import Assignment
from governance.risk import services as risk
from governance.risk.models import RiskDetection
from governance.runs import policy as run_policy
from governance.runs.choices import RunStatus
from governance.usage import selectors as usage


def _noon(day) -> datetime:
    return datetime.combine(day, time(12), timezone.get_current_timezone())


def lanes(user, agent, start: datetime, end: datetime) -> list[tuple]:
    signins = usage.sign_ins_per_day(agent.pk, start.astimezone(UTC).date(), end.astimezone(UTC).date())
    runs = (run_policy.runs_visible_to(user).filter(agent=agent, created_at__gte=start, created_at__lte=end)
            .annotate(day=TruncDate("created_at")).values_list("day")
            .annotate(n=Count("pk"), failed=Count("pk", filter=Q(status=RunStatus.FAILED))).order_by("day"))
    access = []
    for row in Assignment.objects.filter(agent=agent).filter(
            Q(starts_at__range=(start, end)) | Q(expires_at__range=(start, end)) | Q(ended_at__range=(start, end))
    ).select_related("package"):
        ends = row.ended_at or row.expires_at
        for at, what in ((row.starts_at, "starts"), (ends, "ends" if row.ended_at is None else "ended")):
            if at is not None and start <= at <= end:
                access.append((at, f"{row.package.name} {what}", None))
    found = [
        ("Sign-ins", [(_noon(day), f"{day}: {n.total} sign-ins ({n.refused_or_failed} refused or failed)", n.total)
                      for day, n in signins.items()]),
        ("Runs", [(_noon(day), f"{day}: {n} runs ({failed} failed)", n) for day, n, failed in runs]),
        ("Access packages", access),
    ]
    if risk.can_view_risk(user):
        found.append(("Risk", [(d.detected_at, f"{d.get_kind_display()} ({d.get_level_display().lower()} risk)", None)
                               for d in RiskDetection.objects.filter(agent=agent, detected_at__range=(start, end))]))
    return found
