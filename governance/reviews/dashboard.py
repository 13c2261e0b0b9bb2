"""Open access reviews and how far each has come, on the dashboard (``portal.signals.dashboard_cards``): the open
period of each campaign the viewer may see, decided and waiting items, in one grouped query."""

from __future__ import annotations

from django.db.models import Count, Q
from django.urls import reverse

from governance.reviews.choices import ReviewInstanceStatus
from governance.reviews.models import ReviewInstance
from governance.reviews.selectors import reviews_visible_to
from portal import charts

SHOWN = 8


def posture_card(request) -> dict | None:
    if not request.user.is_authenticated:
        return None
    campaigns = reviews_visible_to(request.user)
    workspace = getattr(request, "workspace", None)
    if workspace is not None:
        campaigns = campaigns.filter(workspace=workspace)
    instances = list(ReviewInstance.objects.filter(campaign__in=campaigns.values("pk"),
                                                   status=ReviewInstanceStatus.OPEN)
                     .annotate(total=Count("items", distinct=True),
                               decided=Count("items", filter=Q(items__decisions__isnull=False), distinct=True))
                     .values_list("campaign__name", "ends_at", "total", "decided").order_by("ends_at", "pk")[:SHOWN])
    labels = [f"{name} (ends {ends:%d %b})" for name, ends, _total, _decided in instances]
    decided = [done for _name, _ends, _total, done in instances]
    waiting = [total - done for _name, _ends, total, done in instances]
    chart = charts.columns(chart_id="open-reviews", title="Open access reviews: items decided and waiting",
                           buckets=labels, series=[("Decided", decided), ("Waiting", waiting)], unit="items",
                           bucket_header="Review", classes=("chart-ok", "chart-warn"))
    if not instances:
        chart.summary = "No access review is open."
    else:
        total = sum(decided) + sum(waiting)
        chart.summary = (f"{len(instances)} open reviews; {sum(decided)} of {total} items decided "
                         f"({round(100 * sum(decided) / total) if total else 0}%).")
    return {"template": "portal/dashboard_chart_card.html", "section": "posture", "title": "Access reviews",
            "link": ("All reviews", reverse("review-list")), "charts": [chart]}
