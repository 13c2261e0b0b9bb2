"""What a bulk disable or retire ends, for the agents list's confirmation page (``agents.signals.ending_counts``):
live access tokens (both actions revoke them) and, for retirement, active access-package assignments — two grouped
queries for the whole selection."""

from __future__ import annotations

from django.db.models import Count
from django.utils import timezone

from governance.access.choices import AssignmentStatus
from governance.access.models import Assignment
from governance.signin.models import AccessToken


def counts(agent_ids, action: str) -> dict[int, dict[str, int]]:
    now = timezone.now()
    found: dict[int, dict[str, int]] = {agent_id: {"tokens": 0} for agent_id in agent_ids}
    for agent_id, n in (AccessToken.objects.filter(agent_id__in=agent_ids, revoked_at__isnull=True, expires_at__gt=now)
                        .values_list("agent_id").annotate(n=Count("pk")).order_by()):
        found[agent_id]["tokens"] = n
    if action == "retire":
        for agent_id in agent_ids:
            found[agent_id]["assignments"] = 0
        for agent_id, n in (Assignment.objects.filter(agent_id__in=agent_ids, status__in=[
                AssignmentStatus.ACTIVE, AssignmentStatus.PENDING]).values_list("agent_id").annotate(n=Count("pk"))
                .order_by()):
            found[agent_id]["assignments"] = n
    return found
