"""Django admin: a read-only window on the portal's data. Changes go through the services, as everywhere:
the only write here is the "Deactivate" action, which calls ``directory.user_deactivate``."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError

from portal import directory
from portal.models import (
    AuditEvent,
    ChangeRequest,
    DirectoryRole,
    DirectoryRoleAssignment,
    JobRun,
    Permission,
    User,
    Workspace,
    WorkspaceMembership,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ("username", "display_name", "kind", "is_active", "manager", "last_seen_at")
    list_filter = ("kind", "is_active")
    search_fields = ("username", "display_name", "email")
    exclude = ("password",)
    actions = ["deactivate"]

    @admin.action(description="Deactivate selected users (refused if a workspace would lose its owner floor)")
    def deactivate(self, request, queryset):
        for user in queryset:
            try:
                directory.user_deactivate(actor=request.user, user=user)
            except (ValidationError, PermissionDenied) as error:
                self.message_user(request, f"{user.username}: {' '.join(getattr(error, 'messages', [str(error)]))}",
                                  messages.ERROR)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "actor_name", "action", "target_label")
    list_filter = ("actor_kind",)
    search_fields = ("action", "actor_name", "target_label")


for model in (Permission, DirectoryRole, DirectoryRoleAssignment, Workspace, WorkspaceMembership, JobRun):
    admin.site.register(model, ReadOnlyAdmin)


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    """Read-only: changes are asked for, approved, rejected and reviewed through ``portal.changes`` only."""

    list_display = ("id", "summary", "state", "break_glass", "requested_by", "requested_at", "decided_by")
    list_filter = ("state", "break_glass", "kind")
    search_fields = ("summary",)
