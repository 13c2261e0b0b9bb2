"""``{% signin_volume_chart request %}``: the sign-in log's volume by outcome over the page's time window, drawn as
inline SVG with its table (``portal.charts``).

It counts the rows the page lists (the same filters, the same visibility) in one grouped query bounded to the
page's time window: by hour for a window up to two days, by day beyond. The usage rollup is no substitute here: it
counts a sign-in once per granted scope, which is right for "used" and wrong for a volume."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.conf import settings
from django.db.models import Count
from django.db.models.functions import Trunc
from django.utils import timezone

from governance.signin import signins
from governance.signin.choices import SignInOutcome
from portal import charts

register = template.Library()

HOURLY_UP_TO = timedelta(days=2)
CLASSES = {SignInOutcome.SUCCESS: "chart-ok", SignInOutcome.FAILURE: "chart-warn", SignInOutcome.BLOCKED: "chart-bad"}


def window(filters: dict, now: datetime) -> tuple[datetime, datetime]:
    """The page's time window: its dates, else its period (everything kept for ``all``)."""
    if filters.get("since") or filters.get("until"):
        end = now
        if filters.get("until"):
            end = min(now, signins._start_of(filters["until"] + timedelta(days=1)))
        start = (signins._start_of(filters["since"]) if filters.get("since")
                 else end - timedelta(days=settings.SIGNIN_RETENTION_DAYS))
        return start, end
    period = signins.PERIODS.get(filters.get("period") or signins.DEFAULT_PERIOD)
    return now - (period or timedelta(days=settings.SIGNIN_RETENTION_DAYS)), now


def volume_chart(rows, filters: dict, now: datetime | None = None) -> charts.Chart:
    """Sign-ins of ``rows`` (the page's filtered queryset) by outcome and hour or day."""
    now = now or timezone.now()
    start, end = window(filters, now)
    zone = timezone.get_current_timezone()
    hourly = end - start <= HOURLY_UP_TO
    size = timedelta(hours=1) if hourly else timedelta(days=1)
    first = timezone.localtime(start, zone).replace(minute=0, second=0, microsecond=0)
    if not hourly:
        first = first.replace(hour=0)
    count = max(int((end - first) // size) + 1, 1)
    buckets = [first + size * n for n in range(count)]
    index = {bucket: n for n, bucket in enumerate(buckets)}
    series = {outcome: [0] * count for outcome in SignInOutcome.values}
    grouped = (rows.order_by().annotate(bucket=Trunc("at", "hour" if hourly else "day", tzinfo=zone))
               .values_list("bucket", "outcome").annotate(n=Count("pk")))
    for bucket, outcome, n in grouped:
        at = index.get(timezone.localtime(bucket, zone))
        if at is not None and outcome in series:
            series[outcome][at] += n
    labels = [f"{b:%H:%M}" if hourly else f"{b:%d %b}" for b in buckets]
    if hourly and count > 1:
        labels = [f"{b:%d %b %H:%M}" if b.hour == 0 or n == 0 else f"{b:%H:%M}" for n, b in enumerate(buckets)]
    chart = charts.columns(
        chart_id="signin-volume", title=f"Sign-ins by outcome, per {'hour' if hourly else 'day'} "
                                        f"({timezone.localtime(start, zone):%Y-%m-%d %H:%M} to "
                                        f"{timezone.localtime(end, zone):%Y-%m-%d %H:%M} {zone})",
        buckets=labels, series=[(label, series[value]) for value, label in SignInOutcome.choices],
        classes=[CLASSES[value] for value in SignInOutcome.values], unit="sign-ins",
        bucket_header="Hour" if hourly else "Day", width=1000, height=150, labels=12)
    if chart.empty:
        chart.summary = "No sign-in in this window."
    return chart


@register.simple_tag
def signin_volume_chart(request):
    """The volume chart for the sign-in log page being rendered (its filters, what the viewer may see)."""
    from governance.signin.forms import SignInFilterForm

    form = SignInFilterForm(request.GET or None)
    filters = {}
    if form.is_bound:
        if not form.is_valid():
            return None
        filters = form.cleaned_data
    rows = signins.signins_filtered(signins.signins_visible_to(request.user), filters)
    return volume_chart(rows, filters)
