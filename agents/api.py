"""REST API for the registry: ``/api/v1/blueprints/`` (with the federated credentials a blueprint's agents inherit)
and ``/api/v1/agents/``.

Agents are listed, read, created and moved through their lifecycle (disable, enable, retire) with the same
selectors and services as the pages. There is no update: permissions, owners and sponsors cannot be PATCHed
(405), so the fixed permissions of R3 have no API path either.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents import registry, selectors, trust
from agents.choices import AgentScope, IdentityType
from agents.models import Agent, Blueprint, FederatedCredential, KeyCredential
from portal import api as portal_api
from portal import rbac
from portal.api import router
from portal.models import User


class BlueprintSerializer(serializers.ModelSerializer):
    publisher = serializers.CharField(source="publisher.name")
    required_permissions = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Blueprint
        fields = ["id", "name", "version", "display_name", "publisher", "publisher_kind", "products",
                  "required_skillsets", "is_complete", "permission_digest", "required_permissions", "imported_at"]


class AgentSerializer(serializers.ModelSerializer):
    workspace = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    blueprint = serializers.CharField(source="blueprint.__str__", read_only=True)
    run_as_user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    client_id = serializers.SerializerMethodField()

    class Meta:
        model = Agent
        fields = ["id", "name", "workspace", "blueprint", "scope", "kind", "identity_type", "run_as_user",
                  "status", "created_at", "expires_at", "retired_at", "client_id"]
        read_only_fields = fields

    def get_client_id(self, agent) -> str | None:
        identity = getattr(agent, "identity", None)
        return identity.client_id if identity else None


class AgentCreateSerializer(serializers.Serializer):
    workspace = serializers.SlugField()
    blueprint = serializers.IntegerField(help_text="Blueprint id (a complete version).")
    name = serializers.CharField(max_length=150)
    identity_type = serializers.ChoiceField(choices=IdentityType.choices)
    run_as_user = serializers.CharField(required=False, allow_blank=True)
    scope = serializers.ChoiceField(choices=AgentScope.choices)
    sponsors = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    owners = serializers.ListField(child=serializers.CharField(), allow_empty=False)
    attributes = serializers.DictField(child=serializers.CharField(allow_blank=True), required=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def _users(self, names: list[str], field: str) -> list[User]:
        users = {u.username: u for u in User.objects.filter(username__in=names)}
        missing = [n for n in names if n not in users]
        if missing:
            raise serializers.ValidationError({field: [f"No user is called '{n}'." for n in missing]})
        return [users[n] for n in names]

    def to_spec(self, request) -> tuple:
        data = self.validated_data
        workspace = rbac.workspaces_visible_to(request.user).filter(slug=data["workspace"]).first()
        if workspace is None:
            raise Http404("No such workspace.")
        blueprint = Blueprint.objects.filter(pk=data["blueprint"]).first()
        if blueprint is None:
            raise serializers.ValidationError({"blueprint": ["No such blueprint."]})
        run_as = self._users([data["run_as_user"]], "run_as_user")[0] if data.get("run_as_user") else None
        spec = registry.AgentSpec(
            blueprint=blueprint, name=data["name"], identity_type=data["identity_type"], scope=data["scope"],
            sponsors=self._users(data["sponsors"], "sponsors"), owners=self._users(data["owners"], "owners"),
            run_as_user=run_as, attributes=data.get("attributes") or {}, expires_at=data.get("expires_at"),
        )
        return workspace, spec


class KeyCredentialSerializer(serializers.ModelSerializer):
    active = serializers.SerializerMethodField()

    class Meta:
        model = KeyCredential
        fields = ["id", "kid", "thumbprint", "public_jwk", "jwks_uri", "created_at", "expires_at", "revoked_at",
                  "active"]
        read_only_fields = fields

    def get_active(self, credential) -> bool:
        return credential.is_active()


class KeyCredentialAddSerializer(serializers.Serializer):
    public_jwk = serializers.JSONField(required=False, help_text="The public key as a JWK (public members only).")
    pem = serializers.CharField(required=False, max_length=16 * 1024, help_text="Or the public key as a PEM.")
    jwks_uri = serializers.CharField(required=False, max_length=255, help_text="Or where the agent publishes keys.")
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class FederatedCredentialSerializer(serializers.ModelSerializer):
    class Meta:
        model = FederatedCredential
        fields = ["id", "name", "issuer", "subject", "subject_is_pattern", "audience", "created_at", "revoked_at"]
        read_only_fields = ["id", "created_at", "revoked_at"]
        extra_kwargs = {"issuer": {"validators": []}, "name": {"required": False}}


class BlueprintViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = BlueprintSerializer
    read_scopes = ("Portal.Agents.Read.All",)
    queryset = Blueprint.objects.select_related("publisher").prefetch_related("required_permissions") \
        .order_by("name", "-version")
    lookup_value_regex = r"[0-9]+"

    # --- federated credentials every agent of the blueprint inherits (R28): Global and Security Administrators ---

    @extend_schema(methods=["GET"], request=None, responses={200: FederatedCredentialSerializer(many=True)})
    @extend_schema(methods=["POST"], request=FederatedCredentialSerializer,
                   responses={201: FederatedCredentialSerializer})
    @action(detail=True, methods=["get", "post"], url_path="federated-credentials", pagination_class=None)
    def federated_credentials(self, request, pk=None):
        blueprint = self.get_object()
        if request.method == "GET":
            rows = FederatedCredential.objects.filter(blueprint=blueprint).order_by("-created_at")
            return Response(FederatedCredentialSerializer(rows, many=True).data)
        if not trust.is_trust_administrator(request.user):  # before the body is read: nothing to learn from it
            raise PermissionDenied("Only Global and Security Administrators add blueprint defaults.")
        payload = FederatedCredentialSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        credential = trust.federated_credential_add(actor=request.user, blueprint=blueprint,
                                                    **payload.validated_data)
        return Response(FederatedCredentialSerializer(credential).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: FederatedCredentialSerializer})
    @action(detail=True, methods=["post"], url_path=r"federated-credentials/(?P<credential_id>[0-9]+)/revoke")
    def federated_credential_revoke(self, request, pk=None, credential_id=None):
        blueprint = self.get_object()
        credential = get_object_or_404(FederatedCredential, pk=credential_id, blueprint=blueprint)
        return Response(FederatedCredentialSerializer(trust.federated_credential_revoke(
            actor=request.user, credential=credential)).data)


class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AgentSerializer
    queryset = Agent.objects.none()  # for the schema; get_queryset restricts per user
    read_scopes = ("Portal.Agents.Read.All",)
    errors_as_objects = True  # refusals list {"row", "field", "message"} (portal.api_errors)
    lookup_value_regex = r"[0-9]+"  # an id is a number: anything else is no such URL (404), not a failed query

    def get_queryset(self):
        from agents import policy

        visible = portal_api.app_reads(self.request, Agent.objects.all()) if portal_api.app_only(self.request) else \
            policy.agents_visible_to(self.request.user)
        return visible.select_related("workspace", "blueprint", "run_as_user", "identity").order_by("name", "pk")

    def get_object(self):
        if portal_api.app_only(self.request):
            return get_object_or_404(self.get_queryset(), pk=self.kwargs["pk"])
        return selectors.agent_get(self.request.user, self.kwargs["pk"])

    @extend_schema(request=AgentCreateSerializer, responses={201: AgentSerializer})
    def create(self, request):
        payload = AgentCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        workspace, spec = payload.to_spec(request)
        result = registry.agent_create(actor=request.user, workspace=workspace, spec=spec)
        body = AgentSerializer(result.agent).data
        if result.client_secret:
            body["client_secret"] = result.client_secret  # shown once; only its hash is stored
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    def _lifecycle(self, service, request):
        agent = self.get_object()
        service(actor=request.user, agent=agent)
        return Response(AgentSerializer(Agent.objects.select_related("workspace", "blueprint").get(pk=agent.pk)).data)

    @extend_schema(request=None, responses={200: AgentSerializer})
    @action(detail=True, methods=["post"])
    def disable(self, request, pk=None):
        return self._lifecycle(registry.agent_disable, request)

    @extend_schema(request=None, responses={200: AgentSerializer})
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        return self._lifecycle(registry.agent_enable, request)

    @extend_schema(request=None, responses={200: AgentSerializer})
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        return self._lifecycle(registry.agent_retire, request)


    # --- credentials without secrets (R28): keys and federated credentials of one agent --------------------

    @extend_schema(methods=["GET"], request=None, responses={200: KeyCredentialSerializer(many=True)})
    @extend_schema(methods=["POST"], request=KeyCredentialAddSerializer, responses={201: KeyCredentialSerializer})
    @action(detail=True, methods=["get", "post"], url_path="key-credentials", pagination_class=None)
    def key_credentials(self, request, pk=None):
        agent = self.get_object()
        if request.method == "GET":
            rows = KeyCredential.objects.filter(identity__agent=agent).order_by("-created_at")
            return Response(KeyCredentialSerializer(rows, many=True).data)
        payload = KeyCredentialAddSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        credential = trust.key_credential_add(actor=request.user, agent=agent, jwk=data.get("public_jwk"),
                                              pem=data.get("pem"), jwks_uri=data.get("jwks_uri") or "",
                                              expires_at=data.get("expires_at"))
        return Response(KeyCredentialSerializer(credential).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: KeyCredentialSerializer})
    @action(detail=True, methods=["post"], url_path=r"key-credentials/(?P<credential_id>[0-9]+)/revoke")
    def key_credential_revoke(self, request, pk=None, credential_id=None):
        agent = self.get_object()
        credential = get_object_or_404(KeyCredential, pk=credential_id, identity__agent=agent)
        return Response(KeyCredentialSerializer(trust.key_credential_revoke(actor=request.user,
                                                                            credential=credential)).data)

    @extend_schema(methods=["GET"], request=None, responses={200: FederatedCredentialSerializer(many=True)})
    @extend_schema(methods=["POST"], request=FederatedCredentialSerializer,
                   responses={201: FederatedCredentialSerializer})
    @action(detail=True, methods=["get", "post"], url_path="federated-credentials", pagination_class=None)
    def federated_credentials(self, request, pk=None):
        agent = self.get_object()
        if request.method == "GET":
            rows = FederatedCredential.objects.filter(agent=agent).order_by("-created_at")
            return Response(FederatedCredentialSerializer(rows, many=True).data)
        payload = FederatedCredentialSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        credential = trust.federated_credential_add(actor=request.user, agent=agent, **payload.validated_data)
        return Response(FederatedCredentialSerializer(credential).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: FederatedCredentialSerializer})
    @action(detail=True, methods=["post"], url_path=r"federated-credentials/(?P<credential_id>[0-9]+)/revoke")
    def federated_credential_revoke(self, request, pk=None, credential_id=None):
        agent = self.get_object()
        credential = get_object_or_404(FederatedCredential, pk=credential_id, agent=agent)
        return Response(FederatedCredentialSerializer(trust.federated_credential_revoke(
            actor=request.user, credential=credential)).data)


router.register("blueprints", BlueprintViewSet, basename="api-blueprint")
router.register("agents", AgentViewSet, basename="api-agent")
