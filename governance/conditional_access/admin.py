"""Read-only admin for conditional-access policies: changes go through the policy services."""

from django.contrib import admin

from governance.conditional_access.models import ConditionalAccessPolicy
from portal.admin import ReadOnlyAdmin


@admin.register(ConditionalAccessPolicy)
class ConditionalAccessPolicyAdmin(ReadOnlyAdmin):
    list_display = ("name", "state", "grant", "created_at")
    list_filter = ("state", "grant")
