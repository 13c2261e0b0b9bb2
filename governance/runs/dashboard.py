"""Hygiene findings over time on the dashboard (``portal.signals.dashboard_cards``): for each of the last twelve
weeks, the findings of that week's latest succeeded run of the Agent Hygiene Agent the viewer may see, by level
(one query, bounded to the latest ``RUNS_READ`` runs)."""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from governance.runs import policy as run_policy
from governance.runs.choices import RunStatus
from portal import charts

WEEKS = 12
RUNS_READ = 200
LEVELS = (("high", "High"), ("medium", "Medium"), ("low", "Low"))
HYGIENE = "AgentHygieneAgent"


def posture_card(request) -> dict | None:
    if not request.user.is_authenticated:
        return None
    today = timezone.localdate()
    first = today - timedelta(days=today.weekday()) - timedelta(weeks=WEEKS - 1)
    runs = run_policy.runs_visible_to(request.user).filter(
        status=RunStatus.SUCCEEDED, agent__blueprint__name=HYGIENE,
        created_at__date__gte=first)
    workspace = getattr(request, "workspace", None)
    if workspace is not None:
        runs = runs.filter(agent__workspace=workspace)
    latest: dict[int, list] = {}
    for created_at, findings in runs.order_by("-created_at", "-pk").values_list("created_at", "findings")[:RUNS_READ]:
        index = (timezone.localdate(created_at) - first).days // 7
        if 0 <= index < WEEKS and index not in latest:
            latest[index] = findings or []
    series = []
    for level, label in LEVELS:
        series.append((label, [sum(1 for f in latest.get(i, []) if str(f.get("level")) == level)
                               for i in range(WEEKS)]))
    chart = charts.columns(chart_id="hygiene-findings", title="Hygiene findings over time (latest run each week)",
                           buckets=[f"{day:%d %b}" for day in charts.week_buckets(first, WEEKS)], series=series,
                           unit="findings", bucket_header="Week of", classes=("chart-bad", "chart-warn", "chart-info"))
    if not latest:
        chart.summary = "No run of the Agent Hygiene Agent in the last twelve weeks."
    return {"template": "portal/dashboard_chart_card.html", "section": "posture", "title": "Hygiene findings",
            "link": ("Sessions and runs", reverse("session-list")), "charts": [chart]}
