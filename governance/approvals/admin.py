"""Read-only admin for partner approval requests: decisions go through the approval services."""

from django.contrib import admin

from governance.approvals.models import ApprovalRequest
from portal.admin import ReadOnlyAdmin


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("blueprint", "workspace", "status", "requester", "created_at", "decided_by")
    list_filter = ("status",)
