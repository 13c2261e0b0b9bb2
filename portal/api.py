"""REST API (``/api/v1/``): read access to workspaces, members and the audit trail, restricted like the pages."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import routers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from portal import rbac, selectors
from portal.api_permissions import ScopedAccess, app_only, app_reads, token_scopes  # noqa: F401  (used by every app's API)
from portal.models import AuditEvent, Workspace, WorkspaceMembership

#: The portal scope that lets an access token read governance objects (approvals, packages, reviews).
GOVERNANCE_READ = ("Portal.Governance.Read.All",)


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class WorkspaceSerializer(serializers.ModelSerializer):
    your_role = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["slug", "name", "description", "created_at", "forbid_new_secrets", "your_role"]

    def get_your_role(self, workspace) -> str | None:
        request = self.context["request"]
        return None if app_only(request) else rbac.workspace_role(request.user, workspace)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = WorkspaceMembership
        fields = ["id", "username", "role", "created_at"]


class EffectiveOwnerSerializer(serializers.Serializer):
    username = serializers.CharField(source="user.username")
    sources = serializers.ListField(child=serializers.CharField())
    inherited = serializers.BooleanField()


class AuditEventSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    # the event's place in the signed log (its ``AuditLeaf``); null and "" while pending sequencing
    leaf_index = serializers.IntegerField(read_only=True, allow_null=True)
    leaf_hash = serializers.CharField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id",
                  "target_label", "workspace", "before", "after", "request_id", "hash", "leaf_index", "leaf_hash"]


class WorkspaceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = WorkspaceSerializer
    queryset = Workspace.objects.none()  # for the schema; get_queryset restricts per user
    lookup_field = "slug"
    read_scopes = ("Portal.Agents.Read.All",)

    def get_queryset(self):
        if app_only(self.request):
            return app_reads(self.request, Workspace.objects.order_by("name"), "pk")
        return rbac.workspaces_visible_to(self.request.user).order_by("name")

    @extend_schema(responses=MembershipSerializer(many=True))  # a page of members
    @action(detail=True)
    def members(self, request, slug=None):
        workspace = self.get_object()
        page = self.paginate_queryset(selectors.memberships_of(workspace))
        return self.get_paginated_response(MembershipSerializer(page, many=True).data)

    @extend_schema(responses=EffectiveOwnerSerializer(many=True))
    @action(detail=True, url_path="effective-owners", pagination_class=None)  # one list, never paged
    def effective_owners(self, request, slug=None):
        owners = rbac.effective_owners(self.get_object())
        return Response(EffectiveOwnerSerializer(owners, many=True).data)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.none()  # for the schema; get_queryset restricts per user
    read_scopes = ("Portal.Audit.Read.All",)

    def get_queryset(self):
        events = app_reads(self.request, AuditEvent.objects.all()) if app_only(self.request) else \
            selectors.audit_events_visible_to(self.request.user)
        if events is None:
            raise PermissionDenied("The audit trail is open to workspace owners and audit readers.")
        return events.select_related("workspace", "leaf").order_by("-id")


# No ``.json`` twins of every URL: the API speaks JSON only, and the twins reached the actions with a ``format``
# argument none of them takes (a server error).
router = routers.DefaultRouter()
router.include_format_suffixes = False
router.register("workspaces", WorkspaceViewSet, basename="api-workspace")
router.register("audit-events", AuditEventViewSet, basename="api-audit-event")
