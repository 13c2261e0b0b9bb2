"""``/api/v1/access-packages/`` and ``/api/v1/assignments/``"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents import selectors as agent_selectors
from governance.access import services as access_packages
from governance.access.models import AccessPackage, Assignment
from portal import api as portal_api
from portal import rbac
from portal.api import GOVERNANCE_READ, ReasonSerializer, router


class AccessPackageSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    permissions = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    incompatible_with = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = AccessPackage
        fields = ["id", "name", "description", "workspace", "permissions", "incompatible_with", "created_at",
                  "removed_at"]
        read_only_fields = fields


class AssignmentSerializer(serializers.ModelSerializer):
    package = serializers.SlugRelatedField(slug_field="name", read_only=True)
    agent = serializers.PrimaryKeyRelatedField(read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "package", "agent", "status", "requested_by", "justification", "requested_at", "stage",
                  "starts_at", "expires_at", "extension_until", "ended_at", "end_reason"]
        read_only_fields = fields


class AssignmentRequestSerializer(serializers.Serializer):
    package = serializers.IntegerField()
    agent = serializers.IntegerField()
    justification = serializers.CharField(required=False, allow_blank=True, default="")
    hours = serializers.IntegerField(required=False, allow_null=True, min_value=1)


class HoursSerializer(serializers.Serializer):
    hours = serializers.IntegerField(min_value=1)


class AccessPackageViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = AccessPackageSerializer
    queryset = AccessPackage.objects.none()

    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        if portal_api.app_only(self.request):
            visible = portal_api.app_reads(self.request, AccessPackage.objects.all())
        else:
            visible = AccessPackage.objects.filter(workspace__in=rbac.workspaces_visible_to(self.request.user))
        return visible.select_related("workspace").prefetch_related("permissions", "incompatible_with").order_by("name")


class AssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AssignmentSerializer
    queryset = Assignment.objects.none()

    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        if portal_api.app_only(self.request):
            visible = portal_api.app_reads(self.request, Assignment.objects.select_related(
                "package", "agent", "requested_by", "package__workspace"), "package__workspace")
        else:
            visible = access_packages.assignments_visible_to(self.request.user)
        return visible.order_by("-requested_at", "-pk")

    @extend_schema(request=AssignmentRequestSerializer, responses={201: AssignmentSerializer})
    def create(self, request):
        payload = AssignmentRequestSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        agent = agent_selectors.agent_get(request.user, data["agent"])
        package = AccessPackage.objects.filter(pk=data["package"], workspace=agent.workspace).first()
        if package is None:
            return Response({"errors": ["No such package in the agent's workspace."]}, status=404)
        created = access_packages.assignment_request(actor=request.user, package=package, agent=agent,
                                                     justification=data["justification"], hours=data.get("hours"))
        return Response(AssignmentSerializer(created).data, status=status.HTTP_201_CREATED)

    def _run(self, service, request, **arguments):
        result = service(actor=request.user, assignment=self.get_object(), **arguments)
        return Response(AssignmentSerializer(result).data)

    @extend_schema(request=None, responses={200: AssignmentSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._run(access_packages.assignment_decide, request, approve=True)

    @extend_schema(request=ReasonSerializer, responses={200: AssignmentSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._run(access_packages.assignment_decide, request, approve=False,
                         reason=payload.validated_data["reason"])

    @extend_schema(request=HoursSerializer, responses={200: AssignmentSerializer})
    @action(detail=True, methods=["post"])
    def extend(self, request, pk=None):
        payload = HoursSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._run(access_packages.assignment_extend, request, hours=payload.validated_data["hours"])

    @extend_schema(request=None, responses={200: AssignmentSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return self._run(access_packages.assignment_revoke, request, reason="revoked through the API")

router.register("access-packages", AccessPackageViewSet, basename="api-access-package")

router.register("assignments", AssignmentViewSet, basename="api-assignment")
