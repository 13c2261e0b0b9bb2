"""Read-only admin for the registry: changes go through ``agents.registry`` (R3: no admin path alters grants)."""

from django.contrib import admin

from agents.models import (
    Agent,
    AgentIdentity,
    AgentUser,
    AttributeValue,
    Blueprint,
    BulkJob,
    Credential,
    PermissionGrant,
    Publisher,
    Skill,
    Skillset,
)
from portal.admin import ReadOnlyAdmin


@admin.register(Credential)
class CredentialAdmin(ReadOnlyAdmin):
    list_display = ("prefix", "identity", "created_at", "expires_at", "revoked_at")
    exclude = ("secret_hash",)


@admin.register(BulkJob)
class BulkJobAdmin(ReadOnlyAdmin):
    list_display = ("filename", "workspace", "status", "done", "total", "created_at")
    exclude = ("secrets_ciphertext", "payload")


for model in (Publisher, Skillset, Skill, Blueprint, Agent, AgentIdentity, PermissionGrant, AgentUser,
              AttributeValue):
    admin.site.register(model, ReadOnlyAdmin)
