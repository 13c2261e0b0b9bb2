"""REST API for accepted sponsorship (R30; docs/sponsorship.md): ``/api/v1/sponsorships/`` lists the caller's own
sponsorships; the named person accepts, declines or confirms one. Anyone else's sponsorship is a 404. Signed-in
people only: access tokens are read-only on the portal API and these are personal answers."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents import selectors, sponsorship
from agents.models import Sponsorship
from portal.api import router


class SponsorshipSerializer(serializers.ModelSerializer):
    agent = serializers.IntegerField(source="agent_id", read_only=True, help_text="The agent's id.")
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    workspace = serializers.SlugRelatedField(source="agent.workspace", slug_field="slug", read_only=True)
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    replaces = serializers.SerializerMethodField(help_text="The sponsor this hand-over replaces, if any.")

    class Meta:
        model = Sponsorship
        fields = ["id", "agent", "agent_name", "workspace", "user", "state", "requested_by", "requested_at",
                  "decided_at", "attested_at", "due_at", "replaces"]
        read_only_fields = fields

    def get_replaces(self, row) -> str | None:
        return row.replaces.user.username if row.replaces_id else None


class DeclineSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500)


class SponsorshipViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = SponsorshipSerializer
    queryset = Sponsorship.objects.none()  # for the schema; get_queryset restricts to the caller's own
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        return selectors.sponsorships_of(self.request.user)

    def get_object(self):
        return selectors.sponsorship_get(self.request.user, self.kwargs["pk"])

    def _answer(self, service, request, **extra):
        row = service(actor=request.user, sponsorship=self.get_object(), **extra)
        return Response(SponsorshipSerializer(selectors.sponsorship_get(request.user, row.pk)).data)

    @extend_schema(request=None, responses={200: SponsorshipSerializer})
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self._answer(sponsorship.sponsorship_accept, request)

    @extend_schema(request=DeclineSerializer, responses={200: SponsorshipSerializer})
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        payload = DeclineSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        return self._answer(sponsorship.sponsorship_decline, request, reason=payload.validated_data.get("reason", ""))

    @extend_schema(request=None, responses={200: SponsorshipSerializer})
    @action(detail=True, methods=["post"])
    def attest(self, request, pk=None):
        return self._answer(sponsorship.sponsorship_attest, request)


router.register("sponsorships", SponsorshipViewSet, basename="api-sponsorship")
