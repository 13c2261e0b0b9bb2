"""Access ending over the next 90 days on the dashboard (``portal.signals.dashboard_cards``): active assignments and
time-bound agents by the week they end, for the agents the viewer may see (two grouped queries)."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.urls import reverse
from django.utils import timezone

from agents import dashboard as agent_dashboard
from agents.choices import AgentStatus
from governance.access.choices import AssignmentStatus
from governance.access.models import Assignment
from portal import charts


def posture_card(request) -> dict | None:
    if not request.user.is_authenticated:
        return None
    agents = agent_dashboard.visible_agents(request)
    now = timezone.now()
    today = timezone.localdate(now)
    until = now + timedelta(days=agent_dashboard.HORIZON_DAYS)
    assignments = (Assignment.objects.filter(agent__in=agents.values("pk"), status=AssignmentStatus.ACTIVE,
                                             expires_at__gt=now, expires_at__lte=until)
                   .annotate(day=TruncDate("expires_at")).values_list("day").annotate(n=Count("pk")).order_by())
    ending_agents = (agents.filter(status__in=[AgentStatus.ACTIVE, AgentStatus.DISABLED], expires_at__gt=now,
                                   expires_at__lte=until)
                     .annotate(day=TruncDate("expires_at")).values_list("day").annotate(n=Count("pk")).order_by())
    return {
        "template": "portal/dashboard_chart_card.html", "section": "posture", "title": "Access ending",
        # The packages page lists the current workspace's: someone in no workspace is not sent to a 404.
        "link": ("Access packages", reverse("package-list")) if getattr(request, "workspace", None) else None,
        "charts": [charts.columns(
            chart_id="access-ending", title=f"Access ending in the next {agent_dashboard.HORIZON_DAYS} days, by week",
            buckets=agent_dashboard.week_labels(today), unit="endings", bucket_header="Week from",
            series=[("Package assignments", agent_dashboard.weekly(assignments, today)),
                    ("Time-bound agents", agent_dashboard.weekly(ending_agents, today))])],
    }
