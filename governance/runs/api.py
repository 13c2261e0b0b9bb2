"""``/api/v1/sessions/`` and ``/api/v1/runs/``: open sessions, start and cancel runs, read outputs — the same services
and visibility as the pages. ``POST /api/v1/runs/<id>/outputs/`` is the external executor's callback: it takes the
run's own access token (from the run request) and nothing else."""

from __future__ import annotations

from django.db.models import Count
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from agents import policy as agent_policy
from agents.choices import AgentStatus
from agents.models import Agent
from governance.conditional_access import services as conditional_access
from governance.runs import policy as run_policy
from governance.runs import services as runs
from governance.runs.builtin import facts as agent_facts
from governance.runs.models import Run, Session
from portal import api as portal_api
from portal import api_input, api_permissions
from portal.api import router
from portal.network import client_ip

READ_SCOPES = ("Portal.Agents.Read.All",)


class SessionSerializer(serializers.ModelSerializer):
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    opened_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    runs = serializers.IntegerField(source="run_count", read_only=True)

    class Meta:
        model = Session
        fields = ["id", "agent", "agent_name", "title", "opened_by", "created_at", "runs"]
        read_only_fields = fields


class SessionCreateSerializer(serializers.Serializer):
    agent = serializers.IntegerField()
    title = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


class RunSerializer(serializers.ModelSerializer):
    agent_name = serializers.CharField(source="agent.name", read_only=True)
    started_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    delegated_for = serializers.SlugRelatedField(slug_field="username", read_only=True)
    cancelled_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Run
        fields = ["id", "session", "agent", "agent_name", "trigger", "status", "started_by", "delegated_for",
                  "inputs", "scopes", "policies", "refused_reason", "error", "created_at", "started_at",
                  "deadline_at", "finished_at", "cancelled_by", "summary", "findings"]
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    session = serializers.IntegerField()
    inputs = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False, default=dict)


class OutputsSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["succeeded", "failed"], required=False, default="succeeded")
    summary = serializers.CharField(required=False, allow_blank=True, default="")
    findings = serializers.ListField(child=serializers.DictField(), required=False, default=list)
    error = serializers.CharField(required=False, allow_blank=True, default="")


class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A person's sessions with agents; owners see everyone's in their workspaces (R10)."""

    serializer_class = SessionSerializer
    queryset = Session.objects.none()
    read_scopes = READ_SCOPES

    def get_queryset(self):
        if api_permissions.app_only(self.request):
            visible = api_permissions.app_reads(self.request, Session.objects.all(), "agent__workspace")
        else:
            visible = run_policy.sessions_visible_to(self.request.user)
        return (visible.select_related("agent", "opened_by").annotate(run_count=Count("runs"))
                .order_by("-created_at", "-pk"))

    @extend_schema(request=SessionCreateSerializer, responses={201: SessionSerializer})
    def create(self, request):
        payload = SessionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        agent = get_object_or_404(agent_policy.agents_visible_to(request.user), pk=payload.validated_data["agent"])
        session = runs.session_open(actor=request.user, agent=agent, title=payload.validated_data["title"])
        return Response(SessionSerializer(self.get_queryset().get(pk=session.pk)).data,
                        status=status.HTTP_201_CREATED)


class IsTheRunsOwnToken(BasePermission):
    """The executor's callback: a bearer token issued to this very run (checked again by the service)."""

    message = "Post a run's outputs with the access token of that run."

    def has_permission(self, request, view) -> bool:
        token = request.auth
        return getattr(token, "run_id", None) is not None and str(token.run_id) == str(view.kwargs.get("pk"))


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs: start one in a session, cancel it, read its outputs; executors post outputs back."""

    serializer_class = RunSerializer
    queryset = Run.objects.none()
    read_scopes = READ_SCOPES

    def get_permissions(self):
        if self.action == "outputs" and self.request.method == "POST":
            return [IsTheRunsOwnToken()]
        return super().get_permissions()

    def get_queryset(self):
        if api_permissions.app_only(self.request):
            visible = api_permissions.app_reads(self.request, Run.objects.all(), "agent__workspace")
        else:
            visible = run_policy.runs_visible_to(self.request.user)
        visible = visible.select_related("agent", "started_by", "delegated_for", "cancelled_by")
        params = self.request.query_params
        for name in ("session", "agent"):  # ids; anything else is a 400 that says so
            value = api_input.whole_number_param(self.request, name)
            if value is not None:
                visible = visible.filter(**{f"{name}_id": value})
        if params.get("status"):
            visible = visible.filter(status=params["status"])
        return visible.order_by("-created_at", "-pk")

    @extend_schema(parameters=[OpenApiParameter("session", {"type": "integer", "minimum": 0}),
                               OpenApiParameter("agent", {"type": "integer", "minimum": 0}),
                               OpenApiParameter("status", str)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RunStartSerializer, responses={201: RunSerializer})
    def create(self, request):
        payload = RunStartSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        session = get_object_or_404(run_policy.sessions_visible_to(request.user).select_related("agent"),
                                    pk=payload.validated_data["session"])
        run = runs.run_start(actor=request.user, session=session, inputs=payload.validated_data["inputs"],
                             ip=client_ip(request), trigger="api")
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        runs.run_cancel(actor=request.user, run=run)  # a run that has ended already: 409 (portal.api_errors)
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(methods=["GET"], request=None, responses={200: RunSerializer})
    @extend_schema(methods=["POST"], request=OutputsSerializer, responses={200: RunSerializer})
    @action(detail=True, methods=["get", "post"])
    def outputs(self, request, pk=None):
        if request.method == "GET":
            return Response(RunSerializer(self.get_object()).data)
        payload = OutputsSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        run = get_object_or_404(Run.objects.select_related("agent"), pk=pk)
        run = runs.run_outputs_receive(token=request.auth, run=run, data=payload.validated_data)
        return Response(RunSerializer(Run.objects.select_related("agent").get(pk=run.pk)).data)


router.register("sessions", SessionViewSet, basename="api-session")
router.register("runs", RunViewSet, basename="api-run")





class _CredentialFact(serializers.Serializer):
    prefix = serializers.CharField()
    expires_at = serializers.DateTimeField()
    replaced = serializers.BooleanField(help_text="A newer secret replaced it (it lives out its rotation overlap).")


class _KeyCredentialFact(serializers.Serializer):
    kid = serializers.CharField()
    expires_at = serializers.DateTimeField()


class _FederatedCredentialFact(serializers.Serializer):
    issuer = serializers.CharField()
    subject = serializers.CharField()
    from_blueprint = serializers.BooleanField(help_text="A default of the agent's blueprint.")


class _PermissionFact(serializers.Serializer):
    name = serializers.CharField()
    source = serializers.ChoiceField(choices=["blueprint", "package"])
    assignment_id = serializers.IntegerField(allow_null=True)
    ends_at = serializers.DateTimeField(allow_null=True)
    write = serializers.BooleanField()


class _UsageFact(serializers.Serializer):
    last_used = serializers.DateTimeField(allow_null=True)
    scopes_30d = serializers.ListField(child=serializers.CharField())
    permissions_used_30d = serializers.ListField(child=serializers.CharField())


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
    sponsors = serializers.IntegerField(help_text="Accepted sponsors (docs/sponsorship.md): a named sponsor who has "
                                                  "not accepted, or declined or lapsed, does not count.")
    credentials = _CredentialFact(many=True, required=False, help_text="Unrevoked secrets.")
    key_credentials = _KeyCredentialFact(many=True, required=False, help_text="Active keys (with credentials).")
    federated_credentials = _FederatedCredentialFact(many=True, required=False,
                                                     help_text="Unrevoked federated credentials (with credentials).")
    permissions = _PermissionFact(many=True, required=False)
    run_as_admin = serializers.BooleanField(required=False)
    usage = _UsageFact(required=False)
    policies = _PolicyFact(many=True, required=False)


class AgentFactsPagination(api_input.StrictPageNumberPagination):
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
    data as the caller's scopes allow (``agent_facts.SECTION_SCOPES``). An agent's own token reads its own workspace
    (every workspace with ``Portal.Read.All``, R13); a person (signed in, or a token speaking for them) reads the
    agents visible to them, and the policies section only if they may read policies. ``?workspace=<slug>`` narrows
    to one workspace."""

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

        visible = portal_api.app_reads(self.request, Agent.objects.all()) if portal_api.app_only(self.request) else \
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
