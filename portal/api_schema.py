"""The OpenAPI schema's shared parts (``/api/schema/``): every operation documents the API's error answers.

``PortalAutoSchema`` (DRF's ``DEFAULT_SCHEMA_CLASS``) adds, to every operation, the errors any endpoint can give —
400 (a malformed body or query parameter), 401 (no or a dead credential), 403 (not allowed), 404 (not visible, or
no such page), 429 (rate limited) — and 409 (moved on already: decided, ended) to every write, all with one body,
``ApiError``: ``{"detail": "..."}`` from DRF, ``{"errors": [...]}`` from a service's refusal (``portal.api_errors``),
or ``{"<field>": ["..."]}`` for a serializer's field errors.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

ERROR_DESCRIPTIONS = {
    "400": "The request is malformed: the body, a field or a query parameter (the body says which).",
    "401": "No credential, or an access token that is unknown, expired or revoked.",
    "403": "Signed in, but not allowed to do this (or the token lacks a scope this endpoint accepts).",
    "404": "No such object visible to the caller, no such page, or no such endpoint.",
    "409": "The object has moved on already (decided, closed or ended).",
    "429": "Too many requests; try again later.",
}


class ApiErrorSerializer(serializers.Serializer):
    """Every error body: a ``detail`` message, a list of ``errors``, or field names with their messages."""

    detail = serializers.CharField(required=False)
    errors = serializers.ListField(child=serializers.JSONField(), required=False,
                                   help_text="Messages, or objects {row, field, message} naming where.")

    class Meta:
        ref_name = "ApiError"


def _model_fields_behind(field) -> list:
    """The model fields a serializer field's ``source`` runs through (``run_as_user``, ``agent.name``), or none."""
    model = getattr(getattr(getattr(field, "parent", None), "Meta", None), "model", None)
    if model is None or field.source == "*":
        return []
    found = []
    for name in field.source.split("."):
        try:
            model_field = model._meta.get_field(name)
        except Exception:  # a property or method: its own type hint speaks for it
            return []
        found.append(model_field)
        model = model_field.related_model
        if model is None:
            break
    return found


#: The API's operations grouped by what they act on (the first segment after ``/api/v1/``): tag, then what the tag's
#: objects are called in a one-line summary (singular, plural). The docs list the tags in this order.
RESOURCES = {
    "agents": ("Agents", "agent", "agents"),
    "agent-facts": ("Agents", "agent's facts", "agents' facts (credentials, permissions, sponsors, use)"),
    "blueprints": ("Blueprints", "blueprint", "blueprints (agent definitions)"),
    "sponsorships": ("Agents", "sponsorship", "your sponsorships (asked, accepted, lapsed)"),
    "workspaces": ("Workspaces", "workspace", "workspaces"),
    "approval-requests": ("Partner approvals", "approval request", "partner approval requests"),
    "access-packages": ("Access packages", "access package", "access packages"),
    "assignments": ("Access packages", "assignment", "access package assignments"),
    "reviews": ("Access reviews", "access review", "access reviews"),
    "policies": ("Conditional access", "conditional access policy", "conditional access policies"),
    "sessions": ("Sessions and runs", "session", "sessions"),
    "runs": ("Sessions and runs", "run", "runs"),
    "audit-events": ("Audit", "audit event", "audit events"),
    "changes": ("Changes awaiting approval", "change", "high-impact changes waiting for a second administrator"),
}
TAG_DESCRIPTIONS = {
    "Agents": "The registry: agents, their credentials and their life cycle (set up, disable, enable, retire).",
    "Blueprints": "Agent definitions imported from manifests, and federated credentials shared by their agents.",
    "Workspaces": "Workspaces, their members and their effective owners.",
    "Partner approvals": "Global Administrators approve partner agents' exact permission sets.",
    "Access packages": "Time-bound extra permissions for agents: packages and their assignments.",
    "Access reviews": "Recurring reviews of agents and assignments, and reviewers' decisions.",
    "Conditional access": "Policies evaluated at every token issuance and run start.",
    "Sessions and runs": "Sessions, runs and their outputs.",
    "Audit": "The append-only audit trail.",
    "Blast radius": "What a disruptive change would stop, before it is made: tokens, runs, sessions, people told.",
    "Changes awaiting approval": "High-impact changes a second administrator approves or rejects (four-eyes).",
}
#: Spoken names of actions that are not plain verbs in the URL.
ACTION_WORDS = {"outputs": ("Outputs of", "Add an output to"), "decisions": ("Decisions of", "Decide in"),
                "effective-owners": ("Effective owners of", ""), "members": ("Members of", ""),
                "federated-credentials": ("Federated credentials of", "Add a federated credential to"),
                "key-credentials": ("Key credentials of", "Add a key credential to")}


def describe_tags(result, generator, request, public):
    """drf-spectacular post-processing hook: list the tags in ``TAG_DESCRIPTIONS``' order, each with its sentence."""
    used = {tag for item in result.get("paths", {}).values() for op in item.values() if isinstance(op, dict)
            for tag in op.get("tags", [])}
    result["tags"] = [{"name": name, "description": text} for name, text in TAG_DESCRIPTIONS.items() if name in used]
    return result


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


class PortalAutoSchema(AutoSchema):
    def _resource(self) -> tuple[str, str, str] | None:
        segments = [s for s in self.path.split("/") if s]
        if len(segments) < 3 or segments[:2] != ["api", "v1"]:
            return None
        return RESOURCES.get(segments[2])

    def get_tags(self) -> list[str]:
        """One tag per kind of object (``RESOURCES``), so the docs group the operations as the portal's menus do."""
        resource = self._resource()
        return [resource[0]] if resource else super().get_tags()

    def get_summary(self) -> str | None:
        """A one-line summary: the first line of the view's docstring for this action when it has one, else said
        from the method and the path (``List agents``, ``Retire an agent``)."""
        resource = self._resource()
        if resource is None:
            return super().get_summary()
        _tag, one, many = resource
        segments = [s for s in self.path.split("/") if s][3:]
        params = [s for s in segments if s.startswith("{")]
        words = [s for s in segments if not s.startswith("{")]
        read = self.method in SAFE_METHODS
        if not words:
            if read:
                return f"List {many}" if not params else f"One {one}"
            return f"Create {_article(one)}" if self.method == "POST" else f"Change {_article(one)}"
        action = words[-1]
        if action in ACTION_WORDS:
            reading, writing = ACTION_WORDS[action]
            return f"{reading} {_article(one)}" if read or not writing else f"{writing} {_article(one)}"
        verb = action.replace("-", " ").capitalize()
        if len(words) > 1:  # /agents/{id}/key-credentials/{credential_id}/revoke/
            return f"{verb} {_article(words[0].replace('-', ' ').rstrip('s'))} of {_article(one)}"
        return f"{verb} {_article(one)}"
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if not (field.read_only and isinstance(schema, dict) and "$ref" not in schema):
            return schema
        # DRF builds read-only model fields without the column's null/blank: a foreign key that may be empty
        # (``run_as_user``, ``cancelled_by``) is serialised as null, a blank choice (``min_risk_level``) as "".
        behind = _model_fields_behind(field)
        if not getattr(field, "many", False) and any(getattr(f, "null", False) for f in behind):
            schema["nullable"] = True
        if behind and getattr(behind[-1], "blank", False) and "enum" in schema and "" not in schema["enum"]:
            schema["enum"] = [*schema["enum"], ""]
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        error = self.resolve_serializer(ApiErrorSerializer, direction).ref
        codes = ["400", "401", "403", "404", "429"] + ([] if self.method in SAFE_METHODS else ["409"])
        for code in codes:
            if "content" not in responses.get(code, {}):  # ``409: None`` in an extend_schema: the error body
                responses[code] = {"description": ERROR_DESCRIPTIONS[code],
                                   "content": {"application/json": {"schema": error}}}
        return responses

