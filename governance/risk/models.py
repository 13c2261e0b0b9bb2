"""Risk for agents: detections raised from activity, and the automatic remediation policy."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.models import Agent
from governance.conditional_access.choices import RiskLevel
from governance.risk.choices import DetectionKind, DetectionStatus


class RiskDetection(models.Model):
    """A risk detection on an agent (R21). The agent's risk level is the highest open detection's level."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="risk_detections")
    kind = models.CharField(max_length=30, choices=DetectionKind.choices)
    level = models.CharField(max_length=10, choices=RiskLevel.choices)
    key = models.CharField(max_length=200, blank=True, help_text="What makes it distinct, e.g. the new scope.")
    detail = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=30, choices=DetectionStatus.choices, default=DetectionStatus.OPEN,
                              db_index=True)
    detected_at = models.DateTimeField(default=timezone.now)
    resolved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["agent", "kind", "key"], name="detection_unique_key")]
        indexes = [models.Index(fields=["agent", "status"], name="detection_agent_status")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} on {self.agent} ({self.level})"

class RiskRemediationPolicy(models.Model):
    """The automatic remediation setting (R21): at or above ``min_level``, disable the agent and revoke its tokens.
    One row; edited by Global and Security Administrators."""

    enabled = models.BooleanField(default=False)
    min_level = models.CharField(max_length=10, choices=RiskLevel.choices, default=RiskLevel.HIGH)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Remediate at {self.min_level}" if self.enabled else "No automatic remediation"
