"""``/api/v1/reviews/``"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from governance.reviews import decisions, selectors
from governance.reviews.choices import PermissionAdvice, ReviewDecisionKind
from governance.reviews.models import AccessReview, ReviewItem, ReviewItemPermission
from portal import api as portal_api
from portal.api import GOVERNANCE_READ, router


class AccessReviewSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    packages = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = AccessReview
        fields = ["id", "name", "description", "workspace", "scope_kind", "packages", "reviewer_kind", "recurrence",
                  "starts_at", "duration_days", "auto_apply", "no_response", "active", "created_at"]
        read_only_fields = fields


class ReviewItemPermissionSerializer(serializers.ModelSerializer):
    """One permission of an item with its evidence of use in the review window (docs/design.md, R32), as the review
    page shows it."""

    # ``source`` and ``decision`` are plain strings in the schema: those field names already name other choice sets
    # there (SourceEnum, DecisionEnum), and a second set would rename them.
    source = serializers.CharField(read_only=True, help_text="blueprint (comes with the agent) or package (from an "
                                                             "access package).")
    assignment = serializers.IntegerField(source="assignment_id", read_only=True, allow_null=True,
                                          help_text="The package assignment it comes from (null: with the agent).")
    used = serializers.BooleanField(read_only=True, help_text="Used in the review window.")
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="Null: never used.")
    advice = serializers.ChoiceField(choices=PermissionAdvice.choices, read_only=True,
                                     help_text="What the evidence suggests: keep, remove, or retire_or_keep.")
    decision = serializers.SerializerMethodField(
        help_text="The reviewers' choice for this permission: keep or remove; null while undecided.")

    class Meta:
        model = ReviewItemPermission
        fields = ["id", "permission", "source", "assignment", "used", "last_used_at", "advice",
                  "decision"]
        read_only_fields = fields

    def get_decision(self, row) -> str | None:
        return row.decision or None


class ReviewItemSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name", read_only=True)
    recommendation = serializers.CharField(read_only=True)  # approve or deny (one enum in the schema: DecisionEnum)
    decision = serializers.SerializerMethodField()
    justification = serializers.SerializerMethodField()
    credential_types = serializers.SerializerMethodField(
        help_text="How the agent can authenticate now: secret, key, federated.")
    permission_advice = serializers.CharField(read_only=True, help_text="The recommendation per permission, in words.")
    permissions = ReviewItemPermissionSerializer(many=True, read_only=True)

    class Meta:
        model = ReviewItem
        fields = ["id", "agent", "access", "granted_at", "granted_by", "ends_at", "last_used_at", "recommendation",
                  "recommendation_reason", "decision", "justification", "credential_types", "permission_advice",
                  "permissions"]
        read_only_fields = fields

    def get_decision(self, item) -> str | None:
        return item.mine[0].decision if item.mine else None

    def get_justification(self, item) -> str | None:
        return item.mine[0].justification if item.mine else None

    def get_credential_types(self, item) -> list[str]:
        return getattr(item, "credential_types", [])


class ReviewDecisionSerializer(serializers.Serializer):
    item = serializers.IntegerField()
    decision = serializers.ChoiceField(choices=ReviewDecisionKind.choices)
    justification = serializers.CharField(required=False, allow_blank=True, default="")


class AccessReviewViewSet(viewsets.ReadOnlyModelViewSet):
    """``/api/v1/reviews/``: the campaigns you may see; ``decisions/``: your items in the open instance."""

    serializer_class = AccessReviewSerializer
    queryset = AccessReview.objects.none()

    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        if portal_api.app_only(self.request):
            visible = portal_api.app_reads(self.request, AccessReview.objects.all())
        else:
            visible = selectors.reviews_visible_to(self.request.user)
        return visible.prefetch_related("packages").order_by("name", "pk")

    def _open_instance(self):
        instance = selectors.open_instance(self.get_object())
        if instance is None:
            raise Http404("This review has no open instance.")
        return instance

    @extend_schema(methods=["GET"], request=None, responses={200: ReviewItemSerializer(many=True)})
    @extend_schema(methods=["POST"], request=ReviewDecisionSerializer, responses={200: ReviewItemSerializer, 409: None})
    @action(detail=True, methods=["get", "post"], pagination_class=None)  # the reviewer's items: one list
    def decisions(self, request, pk=None):
        instance = self._open_instance()
        if request.method == "GET":
            # An agent's own token has no person behind it, and only people review (R19): it has no items.
            items = ReviewItem.objects.none() if portal_api.app_only(request) else \
                selectors.items_of_reviewer(request.user, instance)
            return Response(ReviewItemSerializer(selectors.with_credential_types(items), many=True).data)
        payload = ReviewDecisionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        item = ReviewItem.objects.filter(pk=payload.validated_data["item"], instance=instance).first()
        if item is None:
            return Response({"errors": ["No such item in this review's open instance."]}, status=404)
        decisions.review_decide(actor=request.user, item=item, decision=payload.validated_data["decision"],
                                justification=payload.validated_data["justification"])
        decided = selectors.with_credential_types([selectors.items_of_reviewer(request.user, instance).get(pk=item.pk)])
        return Response(ReviewItemSerializer(decided[0]).data)

router.register("reviews", AccessReviewViewSet, basename="api-review")
