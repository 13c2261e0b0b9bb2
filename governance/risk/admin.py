"""Read-only admin for risk detections: decisions go through the risk services."""

from django.contrib import admin

from governance.risk.models import RiskDetection, RiskRemediationPolicy
from portal.admin import ReadOnlyAdmin


@admin.register(RiskDetection)
class RiskDetectionAdmin(ReadOnlyAdmin):
    list_display = ("agent", "kind", "level", "status", "detected_at")
    list_filter = ("kind", "level", "status")


admin.site.register(RiskRemediationPolicy, ReadOnlyAdmin)
