"""An agent's timeline on its page: credentials created, expiring and revoked, permissions granted and ended, and
what the apps above the registry add through ``signals.timeline_lanes`` (sign-ins per day, runs, risk, access
packages), drawn as one SVG strip with its table (``portal.charts``)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from agents import signals
from agents.models import Agent, Credential, KeyCredential, PermissionGrant
from portal import charts
from portal.timefmt import when

BACK = timedelta(days=60)
AHEAD = timedelta(days=90)


def _inside(at: datetime | None, start: datetime, end: datetime) -> bool:
    return at is not None and start <= at <= end


def credential_events(agent: Agent, start: datetime, end: datetime) -> list[tuple]:
    events = []
    for model, noun in ((Credential, "Client secret"), (KeyCredential, "Key")):
        for row in model.objects.filter(identity__agent=agent):
            name = f"{noun} {getattr(row, 'prefix', '') or getattr(row, 'kid', '') or row.pk}".strip()
            for at, what in ((row.created_at, "created"), (row.revoked_at, "revoked"),
                             (None if row.revoked_at else row.expires_at, "expires")):
                if _inside(at, start, end):
                    events.append((at, f"{name} {what}", None))
    return events


def grant_events(agent: Agent, start: datetime, end: datetime) -> list[tuple]:
    events = []
    for grant in PermissionGrant.objects.filter(identity__agent=agent).select_related("permission"):
        for at, what in ((grant.granted_at, "granted"), (grant.ended_at, "ended")):
            if _inside(at, start, end):
                events.append((at, f"{grant.permission.name} {what}", None))
    return events


def agent_timeline(user, agent: Agent, now: datetime | None = None) -> charts.Chart:
    """The strip from ``BACK`` before now to ``AHEAD`` after, in a fixed number of queries."""
    now = now or timezone.now()
    start, end = now - BACK, now + AHEAD
    lanes = [("Credentials", credential_events(agent, start, end)), ("Permissions", grant_events(agent, start, end))]
    for answer in signals.answers(signals.timeline_lanes, user=user, agent=agent, start=start, end=end):
        lanes.extend(answer)
    return charts.timeline(chart_id="agent-timeline",
                           title=f"Timeline: the last {BACK.days} days and the next {AHEAD.days}",
                           start=start, end=end, lanes=lanes, when=when, now=now)
