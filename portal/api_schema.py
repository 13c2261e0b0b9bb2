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


class PortalAutoSchema(AutoSchema):
    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if not (field.read_only and isinstance(schema, dict) and "$ref" not in schema):
            return schema
        # DRF builds read-only model fields without the column's null/blank: a foreign key that may be empty
        # (``run_as_user``, ``cancelled_by``) is serialised as null, a blank choice (``min_risk_level``) as "".
        behind = _model_fields_behind(field)
        if not getattr(field, "many", False) and any(getattr(f, "null", False) for f in behind):
            schema["nullable"] = True
        if behind and behind[-1].blank and "enum" in schema and "" not in schema["enum"]:
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

