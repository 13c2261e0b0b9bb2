"""When an agent's access ends: one definition for every page, notification, review item and finding.

An access package assignment gives an agent its permissions until the assignment's own end (``expires_at``) — but an
agent past its own expiry (``Agent.expires_at``) gets no token at all, so its access ends then if that comes first.
The access therefore *ends* at the earlier of the two; ``None`` when neither has an end. Times are shown to people
with ``portal.timefmt.when`` (zone included).
"""

from __future__ import annotations

from datetime import datetime


def access_ends(expires_at: datetime | None, agent_expires_at: datetime | None) -> datetime | None:
    """The earlier of an assignment's end and its agent's expiry (either may be None: no end)."""
    ends = [moment for moment in (expires_at, agent_expires_at) if moment is not None]
    return min(ends) if ends else None


def assignment_ends(assignment) -> datetime | None:
    """When this assignment's access ends (its agent loaded with it: ``select_related("agent")``)."""
    return access_ends(assignment.expires_at, assignment.agent.expires_at)
