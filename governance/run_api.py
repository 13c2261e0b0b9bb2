"""``/api/v1/sessions/`` and ``/api/v1/runs/``: open sessions, start and cancel runs, read outputs — the same services
and visibility as the pages. ``POST /api/v1/runs/<id>/outputs/`` is the external executor's callback: it takes the
run's own access token (from the run request) and nothing else."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from agents import policy as agent_policy
from agents.models import Run, Session
from governance import runs
from portal import api_permissions
from portal.api import router

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


def _problem(error: ValidationError, code: int = status.HTTP_400_BAD_REQUEST) -> Response:
    return Response({"errors": error.messages}, status=code)


class SessionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A person's sessions with agents; owners see everyone's in their workspaces (R10)."""

    serializer_class = SessionSerializer
    queryset = Session.objects.none()
    read_scopes = READ_SCOPES

    def get_queryset(self):
        visible = Session.objects.all() if api_permissions.app_only(self.request) else \
            agent_policy.sessions_visible_to(self.request.user)
        return (visible.select_related("agent", "opened_by").annotate(run_count=Count("runs"))
                .order_by("-created_at", "-pk"))

    @extend_schema(request=SessionCreateSerializer, responses={201: SessionSerializer})
    def create(self, request):
        payload = SessionCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        agent = get_object_or_404(agent_policy.agents_visible_to(request.user), pk=payload.validated_data["agent"])
        try:
            session = runs.session_open(actor=request.user, agent=agent, title=payload.validated_data["title"])
        except DjangoPermissionDenied as denied:
            raise PermissionDenied(str(denied)) from None
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
        visible = Run.objects.all() if api_permissions.app_only(self.request) else \
            agent_policy.runs_visible_to(self.request.user)
        visible = visible.select_related("agent", "started_by", "delegated_for", "cancelled_by")
        params = self.request.query_params
        for name in ("session", "agent"):  # ids; anything else matches nothing
            value = params.get(name, "")
            if value:
                visible = visible.filter(**{f"{name}_id": int(value)}) if value.isdigit() else visible.none()
        if params.get("status"):
            visible = visible.filter(status=params["status"])
        return visible.order_by("-created_at", "-pk")

    @extend_schema(parameters=[OpenApiParameter("session", int), OpenApiParameter("agent", int),
                               OpenApiParameter("status", str)])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=RunStartSerializer, responses={201: RunSerializer})
    def create(self, request):
        payload = RunStartSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        session = get_object_or_404(agent_policy.sessions_visible_to(request.user).select_related("agent"),
                                    pk=payload.validated_data["session"])
        try:
            run = runs.run_start(actor=request.user, session=session, inputs=payload.validated_data["inputs"],
                                 ip=request.META.get("REMOTE_ADDR"), trigger="api")
        except DjangoPermissionDenied as denied:
            raise PermissionDenied(str(denied)) from None
        except ValidationError as error:
            return _problem(error)
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        try:
            runs.run_cancel(actor=request.user, run=run)
        except DjangoPermissionDenied as denied:
            raise PermissionDenied(str(denied)) from None
        except ValidationError as error:
            return _problem(error, status.HTTP_409_CONFLICT)
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
        try:
            run = runs.run_outputs_receive(token=request.auth, run=run, data=payload.validated_data)
        except DjangoPermissionDenied as denied:
            raise PermissionDenied(str(denied)) from None
        except runs.RunEnded as ended:
            return _problem(ended, status.HTTP_409_CONFLICT)
        except ValidationError as error:
            return _problem(error)
        return Response(RunSerializer(Run.objects.select_related("agent").get(pk=run.pk)).data)


router.register("sessions", SessionViewSet, basename="api-session")
router.register("runs", RunViewSet, basename="api-run")
