"""``/api/v1/approval-requests/``"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents import selectors as agent_selectors
from governance.approvals import services as approvals
from governance.approvals.models import ApprovalRequest
from portal import api as portal_api
from portal.api import GOVERNANCE_READ, ReasonSerializer, router


class ApprovalRequestSerializer(serializers.ModelSerializer):
    blueprint = serializers.CharField(source="blueprint.__str__", read_only=True)
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    agent = serializers.PrimaryKeyRelatedField(read_only=True)
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = ["id", "blueprint", "permissions", "digest", "workspace", "agent", "requester", "justification",
                  "status", "created_at", "expires_at", "decided_by", "decided_at", "reason"]
        read_only_fields = fields


class CreateSerializer(serializers.Serializer):
    agent = serializers.IntegerField()
    justification = serializers.CharField()


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApprovalRequestSerializer
    queryset = ApprovalRequest.objects.none()  # for the schema; get_queryset restricts per user
    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        if portal_api.app_only(self.request):
            visible = portal_api.app_reads(self.request, ApprovalRequest.objects.all(), "agent__workspace")
        else:
            visible = approvals.requests_visible_to(self.request.user)
        return visible.order_by("-created_at", "-pk")

    @extend_schema(request=CreateSerializer, responses={201: ApprovalRequestSerializer})
    def create(self, request):
        payload = CreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        agent = agent_selectors.agent_get(request.user, payload.validated_data["agent"])
        created = approvals.approval_request_create(actor=request.user, agent=agent,
                                                    justification=payload.validated_data["justification"])
        return Response(ApprovalRequestSerializer(created).data, status=status.HTTP_201_CREATED)

    def _decide(self, request, **arguments):
        decided = approvals.approval_decide(actor=request.user, approval=self.get_object(), **arguments)
        return Response(ApprovalRequestSerializer(decided).data)

    @extend_schema(request=None, responses={200: ApprovalRequestSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._decide(request, approve=True)

    @extend_schema(request=ReasonSerializer, responses={200: ApprovalRequestSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def deny(self, request, pk=None):
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._decide(request, approve=False, reason=payload.validated_data["reason"])

    @extend_schema(request=None, responses={200: ApprovalRequestSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def withdraw(self, request, pk=None):
        withdrawn = approvals.approval_withdraw(actor=request.user, approval=self.get_object())
        return Response(ApprovalRequestSerializer(withdrawn).data)

router.register("approval-requests", ApprovalRequestViewSet, basename="api-approval-request")
