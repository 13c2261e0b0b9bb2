"""``/api/v1/policies/``"""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied

from agents.models import Agent
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from portal import api as portal_api
from portal.api import router


class PolicySerializer(serializers.ModelSerializer):
    # Only the named agents the caller may know of (conditional_access.policies_for_reader).
    agents = serializers.SerializerMethodField()
    excluded_agents = serializers.SerializerMethodField()

    class Meta:
        model = ConditionalAccessPolicy
        fields = ["id", "name", "description", "state", "grant", "all_agents", "agent_kinds", "publisher_kinds",
                  "agents", "attribute_rules", "excluded_agents", "min_risk_level", "ip_ranges", "time_windows",
                  "resources", "credential_types", "state_changed_at", "created_at"]
        read_only_fields = fields

    def get_agents(self, policy) -> list[str]:
        return [agent.name for agent in policy.shown_agents]

    def get_excluded_agents(self, policy) -> list[str]:
        return [agent.name for agent in policy.shown_excluded_agents]


class PolicyViewSet(viewsets.ReadOnlyModelViewSet):
    """``/api/v1/policies/``: conditional-access policies, for policy readers and tokens with Policy.Read.All."""

    serializer_class = PolicySerializer
    queryset = ConditionalAccessPolicy.objects.none()
    read_scopes = ("Policy.Read.All", "Policy.Read.ConditionalAccess", "Portal.Governance.Read.All")

    def get_queryset(self):
        if not portal_api.app_only(self.request) and not conditional_access.can_read_policies(self.request.user):
            raise PermissionDenied("Conditional access policies are open to administrators, readers and owners.")
        if portal_api.app_only(self.request):
            return conditional_access.policies_for_reader(
                agents_in_reach=portal_api.app_reads(self.request, Agent.objects.all()))
        return conditional_access.policies_for_reader(user=self.request.user)

router.register("policies", PolicyViewSet, basename="api-policy")
