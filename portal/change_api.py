"""``/api/v1/changes/``: high-impact changes waiting for a second administrator (docs/four-eyes.md), for people.

Listed as on the Changes page (administrators see every request, anyone else their own); an administrator who is
not the requester approves or rejects. Agents' own tokens see none: four-eyes is between people.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from portal import changes
from portal.api import ReasonSerializer, app_only, router
from portal.models import ChangeRequest


class ChangeRequestSerializer(serializers.ModelSerializer):
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ChangeRequest
        fields = ["id", "kind", "summary", "state", "break_glass", "justification", "requested_by", "requested_at",
                  "decided_by", "decided_at", "decision_note", "outcome", "review_flagged"]
        read_only_fields = fields


class ChangeRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ChangeRequestSerializer
    queryset = ChangeRequest.objects.none()  # for the schema; get_queryset restricts per user
    read_scopes = ("Portal.Governance.Read.All",)

    def get_queryset(self):
        if app_only(self.request):
            return ChangeRequest.objects.none()
        return changes.changes_visible_to(self.request.user).order_by("-requested_at", "-pk")

    @extend_schema(request=None, responses={200: ChangeRequestSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve and apply the change, as you. A change that makes a secret (a resource server's) answers it once,
        as ``secret``; it is never stored."""
        change, result = changes.change_approve(actor=request.user, change=self.get_object())
        answer = ChangeRequestSerializer(change).data
        spec = changes.kind_spec(change.kind)
        if spec.shown_once is not None:
            answer["secret"] = spec.shown_once(result)
        return Response(answer, headers={"Cache-Control": "no-store"})

    @extend_schema(request=ReasonSerializer, responses={200: ChangeRequestSerializer, 409: None})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        payload = ReasonSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        change = changes.change_reject(actor=request.user, change=self.get_object(),
                                       reason=payload.validated_data["reason"])
        return Response(ChangeRequestSerializer(change).data)


router.register("changes", ChangeRequestViewSet, basename="api-change")
