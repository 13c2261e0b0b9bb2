"""Read-only admin for access packages and assignments: changes go through the access services."""

from django.contrib import admin

from governance.access.models import AccessPackage, Assignment, AssignmentPolicy
from portal.admin import ReadOnlyAdmin


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ("package", "agent", "status", "starts_at", "expires_at")
    list_filter = ("status",)


for model in (AccessPackage, AssignmentPolicy):
    admin.site.register(model, ReadOnlyAdmin)
