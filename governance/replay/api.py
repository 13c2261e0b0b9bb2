"""``GET /api/v1/policies/<id>/replay/?days=7``: what a policy would have blocked (docs/policy-replay.md)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from agents.models import Agent
from governance.conditional_access.api import PolicyViewSet
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.replay import replay, selectors
from portal import api as portal_api
from portal.api import router


def replay_days(value) -> int:
    """The window asked for: 7 (the default) or 30 days."""
    try:
        days = int(value or replay.WINDOWS[0])
    except (TypeError, ValueError):
        days = 0
    if days not in replay.WINDOWS:
        raise ValidationError({"days": f"Replay the last {' or '.join(str(d) for d in replay.WINDOWS)} days."})
    return days


class PolicyReplayViewSet(viewsets.ViewSet):
    """The policy's replay over the recorded sign-ins and run starts: counts by day and by agent, and how many of
    the blocked ones were legitimate (successes of active agents with no open risk detection). The same readers and
    scopes as ``/api/v1/policies/``; an agent's own token counts its workspace's agents only."""

    read_scopes = PolicyViewSet.read_scopes

    @extend_schema(parameters=[OpenApiParameter("days", OpenApiTypes.INT, enum=list(replay.WINDOWS))],
                   responses=OpenApiTypes.OBJECT)
    def list(self, request, policy_id=None):
        days = replay_days(request.query_params.get("days"))
        if portal_api.app_only(request):
            agent_ids = selectors.app_agent_ids(portal_api.app_reads(request, Agent.objects.all()))
        elif selectors.can_replay(request.user):
            agent_ids = selectors.replay_agent_ids(request.user)
        else:
            raise PermissionDenied("Conditional access policies are open to administrators, readers and owners.")
        policy = get_object_or_404(ConditionalAccessPolicy, pk=policy_id)
        return Response(replay.policy_replay(policy, days=days, agent_ids=agent_ids).as_dict())


router.register(r"policies/(?P<policy_id>[0-9]+)/replay", PolicyReplayViewSet, basename="api-policy-replay")
