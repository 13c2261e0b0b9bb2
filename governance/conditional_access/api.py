"""``/api/v1/policies/``"""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied

from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from portal import api as portal_api
from portal.api import router


class PolicySerializer(serializers.ModelSerializer):
    agents = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    excluded_agents = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = ConditionalAccessPolicy
        fields = ["id", "name", "description", "state", "grant", "all_agents", "agent_kinds", "publisher_kinds",
                  "agents", "attribute_rules", "excluded_agents", "min_risk_level", "ip_ranges", "time_windows",
                  "state_changed_at", "created_at"]
        read_only_fields = fields


class PolicyViewSet(viewsets.ReadOnlyModelViewSet):
    """``/api/v1/policies/``: conditional-access policies, for policy readers and tokens with Policy.Read.All."""

    serializer_class = PolicySerializer
    queryset = ConditionalAccessPolicy.objects.none()
    read_scopes = ("Policy.Read.All", "Policy.Read.ConditionalAccess", "Portal.Governance.Read.All")

    def get_queryset(self):
        if not portal_api.app_only(self.request) and not conditional_access.can_read_policies(self.request.user):
            raise PermissionDenied("Conditional access policies are open to administrators, readers and owners.")
        return ConditionalAccessPolicy.objects.prefetch_related("agents", "excluded_agents").order_by("name", "pk")

router.register("policies", PolicyViewSet, basename="api-policy")
