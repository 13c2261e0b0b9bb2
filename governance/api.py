"""``/api/v1/approval-requests/``: list, retrieve, create, approve, deny, withdraw — the same services and
permissions as the pages. A decision on a request that is no longer pending answers 409 Conflict."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import Http404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from agents import selectors as agent_selectors
from agents.choices import AgentStatus
from agents.models import Agent
from governance import access_packages, agent_facts, approvals, conditional_access, reviews
from governance.choices import ReviewDecisionKind
from governance.models import (
    AccessPackage,
    AccessReview,
    ApprovalRequest,
    Assignment,
    ConditionalAccessPolicy,
    ReviewItem,
)
from portal import api as portal_api
from portal import rbac
from portal.api import router

GOVERNANCE_READ = ("Portal.Governance.Read.All",)


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


class ReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")


def _error(error: ValidationError) -> Response:
    code = status.HTTP_409_CONFLICT if isinstance(error, approvals.AlreadyDecided) else status.HTTP_400_BAD_REQUEST
    return Response({"errors": error.messages}, status=code)


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApprovalRequestSerializer
    queryset = ApprovalRequest.objects.none()  # for the schema; get_queryset restricts per user
    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        visible = ApprovalRequest.objects.all() if portal_api.app_only(self.request) else \
            approvals.requests_visible_to(self.request.user)
        return visible.order_by("-created_at", "-pk")

    @extend_schema(request=CreateSerializer, responses={201: ApprovalRequestSerializer})
    def create(self, request):
        payload = CreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        agent = agent_selectors.agent_get(request.user, payload.validated_data["agent"])
        try:
            created = approvals.approval_request_create(actor=request.user, agent=agent,
                                                        justification=payload.validated_data["justification"])
        except ValidationError as error:
            return _error(error)
        return Response(ApprovalRequestSerializer(created).data, status=status.HTTP_201_CREATED)

    def _decide(self, request, **arguments):
        try:
            decided = approvals.approval_decide(actor=request.user, approval=self.get_object(), **arguments)
        except ValidationError as error:
            return _error(error)
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
        try:
            withdrawn = approvals.approval_withdraw(actor=request.user, approval=self.get_object())
        except ValidationError as error:
            return _error(error)
        return Response(ApprovalRequestSerializer(withdrawn).data)


router.register("approval-requests", ApprovalRequestViewSet, basename="api-approval-request")


# --- access packages and assignments (R17, R18) -----------------------------------------------------------------


class AccessPackageSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    permissions = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)
    incompatible_with = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = AccessPackage
        fields = ["id", "name", "description", "workspace", "permissions", "incompatible_with", "created_at"]
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
        visible = AccessPackage.objects.all() if portal_api.app_only(self.request) else \
            AccessPackage.objects.filter(workspace__in=rbac.workspaces_visible_to(self.request.user))
        return visible.select_related("workspace").prefetch_related("permissions", "incompatible_with").order_by("name")


class AssignmentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AssignmentSerializer
    queryset = Assignment.objects.none()

    read_scopes = GOVERNANCE_READ

    def get_queryset(self):
        visible = Assignment.objects.select_related("package", "agent", "requested_by", "package__workspace") \
            if portal_api.app_only(self.request) else access_packages.assignments_visible_to(self.request.user)
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
        try:
            created = access_packages.assignment_request(actor=request.user, package=package, agent=agent,
                                                         justification=data["justification"], hours=data.get("hours"))
        except ValidationError as error:
            return _error(error)
        return Response(AssignmentSerializer(created).data, status=status.HTTP_201_CREATED)

    def _run(self, service, request, **arguments):
        try:
            result = service(actor=request.user, assignment=self.get_object(), **arguments)
        except ValidationError as error:
            if getattr(error, "code", None) == "already_decided":
                return Response({"errors": error.messages}, status=status.HTTP_409_CONFLICT)
            return _error(error)
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


# --- access reviews (R19) ----------------------------------------------------------------------------------------


class AccessReviewSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    packages = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = AccessReview
        fields = ["id", "name", "description", "workspace", "scope_kind", "packages", "reviewer_kind", "recurrence",
                  "starts_at", "duration_days", "auto_apply", "no_response", "active", "created_at"]
        read_only_fields = fields


class ReviewItemSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.name", read_only=True)
    recommendation = serializers.CharField(read_only=True)  # approve or deny (one enum in the schema: DecisionEnum)
    decision = serializers.SerializerMethodField()
    justification = serializers.SerializerMethodField()

    class Meta:
        model = ReviewItem
        fields = ["id", "agent", "access", "granted_at", "granted_by", "ends_at", "last_used_at", "recommendation",
                  "recommendation_reason", "decision", "justification"]
        read_only_fields = fields

    def get_decision(self, item) -> str | None:
        return item.mine[0].decision if item.mine else None

    def get_justification(self, item) -> str | None:
        return item.mine[0].justification if item.mine else None


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
        visible = AccessReview.objects.all() if portal_api.app_only(self.request) else \
            reviews.reviews_visible_to(self.request.user)
        return visible.prefetch_related("packages").order_by("name", "pk")

    def _open_instance(self):
        instance = reviews.open_instance(self.get_object())
        if instance is None:
            raise Http404("This review has no open instance.")
        return instance

    @extend_schema(methods=["GET"], request=None, responses={200: ReviewItemSerializer(many=True)})
    @extend_schema(methods=["POST"], request=ReviewDecisionSerializer, responses={200: ReviewItemSerializer, 409: None})
    @action(detail=True, methods=["get", "post"])
    def decisions(self, request, pk=None):
        instance = self._open_instance()
        if request.method == "GET":
            items = reviews.items_of_reviewer(request.user, instance)
            return Response(ReviewItemSerializer(items, many=True).data)
        payload = ReviewDecisionSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        item = ReviewItem.objects.filter(pk=payload.validated_data["item"], instance=instance).first()
        if item is None:
            return Response({"errors": ["No such item in this review's open instance."]}, status=404)
        try:
            reviews.review_decide(actor=request.user, item=item, decision=payload.validated_data["decision"],
                                  justification=payload.validated_data["justification"])
        except ValidationError as error:
            code = 409 if getattr(error, "code", None) == "already_decided" else 400
            return Response({"errors": error.messages}, status=code)
        return Response(ReviewItemSerializer(reviews.items_of_reviewer(request.user, instance).get(pk=item.pk)).data)


router.register("reviews", AccessReviewViewSet, basename="api-review")


# --- conditional access policies (read-only; R20) ------------------------------------------------------------


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


# --- agent facts for the built-in agents (issue 8) ---------------------------------------------------------------


class _CredentialFact(serializers.Serializer):
    prefix = serializers.CharField()
    expires_at = serializers.DateTimeField()
    replaced = serializers.BooleanField(help_text="A newer secret replaced it (it lives out its rotation overlap).")


class _PermissionFact(serializers.Serializer):
    name = serializers.CharField()
    source = serializers.ChoiceField(choices=["blueprint", "package"])
    assignment_id = serializers.IntegerField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    write = serializers.BooleanField()


class _UsageFact(serializers.Serializer):
    last_used = serializers.DateTimeField(allow_null=True)
    scopes_30d = serializers.ListField(child=serializers.CharField())


class _PolicyFact(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.CharField()
    grant = serializers.CharField()
    min_risk_level = serializers.CharField(allow_blank=True)
    excluded = serializers.BooleanField()


class AgentFactsSerializer(serializers.Serializer):
    """One item of ``/api/v1/agent-facts/`` (documentation: the view returns ``agent_facts.facts`` as is). The
    optional sections are present when the caller's scopes open them (the response's ``sections``)."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    workspace = serializers.SlugField()
    kind = serializers.CharField()
    publisher_kind = serializers.CharField()
    identity_type = serializers.CharField()
    status = serializers.CharField()
    risk_level = serializers.CharField()
    created_at = serializers.DateTimeField()
    orphaned_at = serializers.DateTimeField(allow_null=True)
    sponsors = serializers.IntegerField(help_text="Active sponsors.")
    credentials = _CredentialFact(many=True, required=False, help_text="Unrevoked secrets.")
    permissions = _PermissionFact(many=True, required=False)
    run_as_admin = serializers.BooleanField(required=False)
    usage = _UsageFact(required=False)
    policies = _PolicyFact(many=True, required=False)


class AgentFactsPagination(PageNumberPagination):
    """Pages of 200 agents, with the ``sections`` the caller's scopes opened."""

    page_size = 200
    sections: list[str] = []

    def get_paginated_response(self, data):
        return Response({"count": self.page.paginator.count, "next": self.get_next_link(),
                         "previous": self.get_previous_link(), "sections": self.sections, "results": data})

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["sections"] = {"type": "array",
                                            "items": {"type": "string", "enum": sorted(agent_facts.ALL_SECTIONS)}}
        return schema


class AgentFactsViewSet(viewsets.GenericViewSet):
    """``/api/v1/agent-facts/``: what the built-in agents read about the active agents, one section per kind of
    data as the caller's scopes allow (``agent_facts.SECTION_SCOPES``). An agent's own token reads every workspace;
    a person (signed in, or a token speaking for them) reads the agents visible to them, and the policies section
    only if they may read policies. ``?workspace=<slug>`` narrows to one workspace."""

    serializer_class = AgentFactsSerializer
    queryset = Agent.objects.none()
    read_scopes = agent_facts.BASE_SCOPES
    pagination_class = AgentFactsPagination

    def sections(self) -> frozenset[str]:
        scopes = portal_api.token_scopes(self.request)
        sections = agent_facts.ALL_SECTIONS if scopes is None else agent_facts.sections_for_scopes(scopes)
        if not portal_api.app_only(self.request) and not conditional_access.can_read_policies(self.request.user):
            sections -= {agent_facts.POLICIES}
        return sections

    def get_queryset(self):
        from agents import policy

        visible = Agent.objects.all() if portal_api.app_only(self.request) else \
            policy.agents_visible_to(self.request.user)
        visible = visible.filter(status=AgentStatus.ACTIVE)
        workspace = self.request.query_params.get("workspace")
        if workspace:
            visible = visible.filter(workspace__slug=workspace)
        return visible.order_by("name", "pk")

    @extend_schema(parameters=[OpenApiParameter("workspace", str, description="Only this workspace's agents.")])
    def list(self, request):
        sections = self.sections()
        ids = self.paginate_queryset(self.get_queryset().values_list("pk", flat=True))
        items = agent_facts.facts(Agent.objects.filter(pk__in=ids), sections=sections, now=timezone.now())
        self.paginator.sections = sorted(sections)
        return self.get_paginated_response(items)


router.register("agent-facts", AgentFactsViewSet, basename="api-agent-facts")
