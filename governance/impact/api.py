"""``/api/v1/agents/<id>/preview/``, ``/api/v1/credentials/<id>/preview/``, ``/api/v1/assignments/<id>/preview/`` and
``/api/v1/access-packages/<id>/preview/``: what a disruptive change would stop, from the same preview function as
its confirmation page (docs/blast-radius.md).

Whoever may make the change may preview it: an object you may not see is a 404, one you see but may not change a
403. Access tokens never change anything through the API, so they preview nothing either."""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from agents import policy as agent_policy
from agents import selectors as agent_selectors
from governance.access.models import AccessPackage
from governance.impact import pages, previews
from portal import rbac
from portal.api import router

TAG = "Blast radius"


class ResourceSerializer(serializers.Serializer):
    resource = serializers.CharField()
    name = serializers.CharField()
    last_used_at = serializers.DateTimeField()


class PersonSerializer(serializers.Serializer):
    username = serializers.CharField()
    name = serializers.CharField()
    roles = serializers.ListField(child=serializers.CharField())


@extend_schema_serializer(many=False)  # one preview per answer, although each is a viewset's GET on its collection
class BlastRadiusSerializer(serializers.Serializer):
    """The shape of every preview (for the schema; the views answer ``BlastRadius.as_json``)."""

    action = serializers.CharField()
    agents = serializers.ListField(child=serializers.DictField(), help_text="Per agent: tokens, runs, sessions.")
    tokens = serializers.IntegerField(help_text="Live access tokens the change revokes.")
    token_resources = serializers.ListField(child=serializers.DictField(), help_text="Those tokens per resource.")
    token_ids = serializers.ListField(child=serializers.IntegerField())
    tokens_kept = serializers.IntegerField(help_text="Live tokens left to run to their expiry.")
    runs = serializers.ListField(child=serializers.DictField(), help_text="Queued and running runs that stop.")
    scheduled = serializers.ListField(child=serializers.DictField(), help_text="Schedules that stop.")
    sessions = serializers.ListField(child=serializers.DictField(), help_text="Sessions in progress that stop.")
    resources = ResourceSerializer(many=True, help_text="Resources used in the last 7 days.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text="Scopes used in the last 7 days.")
    since = serializers.DateTimeField()
    agents_without_credential = serializers.ListField(child=serializers.CharField())
    assignments = serializers.IntegerField(help_text="Access-package assignments that end.")
    people = PersonSerializer(many=True, help_text="The people who are told.")
    skipped = serializers.ListField(child=serializers.CharField(), help_text="Agents the change leaves alone.")


def _action(request, allowed: tuple[str, ...]) -> str:
    action = request.query_params.get("action", "")
    if action not in allowed:
        raise ValidationError({"action": f"Say which change to preview: {' or '.join(allowed)}."})
    return action


def _schema(summary: str, actions: tuple[str, ...], extra=()):
    return extend_schema(tags=[TAG], summary=summary, responses={200: BlastRadiusSerializer}, parameters=[
        OpenApiParameter("action", OpenApiTypes.STR, enum=list(actions), required=True), *extra])


class PreviewViewSet(viewsets.GenericViewSet):
    read_scopes = ()  # tokens change nothing through the API, so they preview nothing
    serializer_class = BlastRadiusSerializer
    pagination_class = None


class AgentPreviewViewSet(PreviewViewSet):
    @_schema("What disabling or retiring an agent stops", previews.AGENT_ACTIONS)
    def list(self, request, agent_id=None):
        action = _action(request, previews.AGENT_ACTIONS)
        agent = agent_selectors.agent_get(request.user, int(agent_id))
        allowed = agent_policy.can_toggle_agent if action == "disable" else agent_policy.can_manage_agent
        if not allowed(request.user, agent):
            raise PermissionDenied(f"Only the people who may {action} this agent preview it.")
        return Response(previews.agents_preview([agent], action).as_json())


class CredentialPreviewViewSet(PreviewViewSet):
    @_schema("What revoking a credential stops", ("revoke",), [OpenApiParameter(
        "kind", OpenApiTypes.STR, enum=list(pages.CREDENTIAL_KINDS), description="secret (default), key or federated")])
    def list(self, request, credential_id=None):
        _action(request, ("revoke",))
        kind = request.query_params.get("kind", "secret")
        if kind not in pages.CREDENTIAL_KINDS:
            raise ValidationError({"kind": "A credential is a secret, a key or federated."})
        model, owner, _url, _word = pages.CREDENTIAL_KINDS[kind]
        row = model.objects.filter(pk=int(credential_id)).values_list(f"{owner}_id" if owner == "agent"
                                                                      else "identity__agent_id", flat=True).first()
        if row is None:
            raise Http404("No such credential.")
        _agent, credential = pages.credential_for(request.user, row, kind, int(credential_id))
        return Response(previews.credential_preview(credential).as_json())


class AssignmentPreviewViewSet(PreviewViewSet):
    @_schema("What ending an assignment stops", ("end",))
    def list(self, request, assignment_id=None):
        _action(request, ("end",))
        assignment = pages.assignment_for(request.user, int(assignment_id))
        return Response(previews.assignment_preview(assignment).as_json())


class AccessPackagePreviewViewSet(PreviewViewSet):
    @_schema("What removing an access package stops", ("remove",))
    def list(self, request, package_id=None):
        _action(request, ("remove",))
        package = AccessPackage.objects.filter(pk=int(package_id),
                                               workspace__in=rbac.workspaces_visible_to(request.user)).first()
        if package is None:
            raise Http404("No such access package.")
        if not rbac.has_workspace_perm(request.user, package.workspace, rbac.MANAGE_MEMBERS):
            raise PermissionDenied("Only the workspace's owners manage its access packages.")
        return Response(previews.package_preview(package).as_json())


router.register(r"agents/(?P<agent_id>[0-9]+)/preview", AgentPreviewViewSet, basename="api-agent-preview")
router.register(r"credentials/(?P<credential_id>[0-9]+)/preview", CredentialPreviewViewSet,
                basename="api-credential-preview")
router.register(r"assignments/(?P<assignment_id>[0-9]+)/preview", AssignmentPreviewViewSet,
                basename="api-assignment-preview")
router.register(r"access-packages/(?P<package_id>[0-9]+)/preview", AccessPackagePreviewViewSet,
                basename="api-access-package-preview")
