"""The registry's pictures on the dashboard (``portal.signals.dashboard_cards``): agents by status and by risk,
and credentials expiring over the next 90 days by week — only agents the viewer may see, in the current workspace
when one is chosen, in four grouped queries whatever the number of agents."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from agents import policy
from agents.choices import AgentStatus
from agents.models import Credential, KeyCredential
from portal import charts

HORIZON_DAYS = 90
WEEKS = -(-HORIZON_DAYS // 7)
RISK_LEVELS = (("none", "None"), ("low", "Low"), ("medium", "Medium"), ("high", "High"))
STATUS_CLASSES = {AgentStatus.DRAFT: "chart-muted", AgentStatus.PENDING_APPROVAL: "chart-warn",
                  AgentStatus.ACTIVE: "chart-ok", AgentStatus.DISABLED: "chart-bad", AgentStatus.RETIRED: "chart-s5"}
RISK_CLASSES = ("chart-ok", "chart-info", "chart-warn", "chart-bad")


def visible_agents(request):
    """The agents the dashboard counts: visible to the viewer, in the current workspace when one is chosen."""
    agents = policy.agents_visible_to(request.user)
    workspace = getattr(request, "workspace", None)
    return agents.filter(workspace=workspace) if workspace is not None else agents


def week_labels(start) -> list[str]:
    return [f"{day:%d %b}" for day in charts.week_buckets(start, WEEKS)]


def weekly(rows, start, count: int = WEEKS) -> list[int]:
    """Counts per day (``(date, n)`` rows) folded into ``count`` weeks from ``start`` (a date)."""
    values = [0] * count
    for day, n in rows:
        index = (day - start).days // 7
        if 0 <= index < count:
            values[index] += n
    return values


def posture_cards(request) -> list[dict] | None:
    if not request.user.is_authenticated:
        return None
    agents = visible_agents(request)
    by_status = dict(agents.values_list("status").annotate(n=Count("pk")).order_by())
    by_risk = dict(agents.exclude(status=AgentStatus.RETIRED).values_list("risk_level").annotate(n=Count("pk"))
                   .order_by())
    now = timezone.now()
    today = timezone.localdate(now)
    until = now + timedelta(days=HORIZON_DAYS)
    expiring = {}
    for model, name in ((Credential, "Client secrets"), (KeyCredential, "Keys")):
        rows = (model.objects.filter(identity__agent__in=agents.values("pk"), revoked_at__isnull=True,
                                     expires_at__gt=now, expires_at__lte=until)
                .annotate(day=TruncDate("expires_at")).values_list("day").annotate(n=Count("pk")).order_by())
        expiring[name] = weekly(rows, today)
    list_url = reverse("agent-list")
    expiring_chart = charts.columns(chart_id="credentials-expiring",
                                    title=f"Credentials expiring in the next {HORIZON_DAYS} days, by week",
                                    buckets=week_labels(today), series=list(expiring.items()), unit="credentials",
                                    bucket_header="Week from")
    if expiring_chart.empty:
        expiring_chart.summary = f"No credential expires in the next {HORIZON_DAYS} days."
    return [{
        "template": "portal/dashboard_chart_card.html", "section": "posture", "title": "Agents",
        "link": ("Open the agent list", list_url),
        "charts": [
            charts.bars(chart_id="agents-by-status", title="Agents by status", unit="agents",
                        rows=[(label, by_status.get(value, 0)) for value, label in AgentStatus.choices],
                        classes=[STATUS_CLASSES[value] for value, _label in AgentStatus.choices]),
            charts.bars(chart_id="agents-by-risk", title="Agents in use by risk level", unit="agents",
                        rows=[(label, by_risk.get(value, 0)) for value, label in RISK_LEVELS], classes=RISK_CLASSES),
        ],
    }, {
        "template": "portal/dashboard_chart_card.html", "section": "posture", "title": "Credentials expiring",
        "link": ("Agents expiring soon", f"{list_url}?expiring=1"),
        "charts": [expiring_chart],
    }]
