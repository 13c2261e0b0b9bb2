"""Partner approval requests, bound to the exact permission set they approve."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent, Blueprint
from governance.approvals.choices import ApprovalStatus
from portal.models import Workspace


class ApprovalRequest(models.Model):
    """A request that a Global Administrator approve a partner blueprint's exact permission set (R14, R15).

    The approval covers ``digest`` — (blueprint, version, sorted permissions) — and nothing else: a version with
    another permission set has another digest and needs its own approval.
    """

    blueprint = models.ForeignKey(Blueprint, on_delete=models.PROTECT, related_name="approval_requests")
    permissions = models.JSONField(default=list, help_text="The exact permission names, sorted, as requested.")
    digest = models.CharField(max_length=64, db_index=True)
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="approval_requests")
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="approval_requests")
    requester = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+", help_text="Empty when the system asked (a command or job).")
    justification = models.TextField()
    status = models.CharField(max_length=20, choices=ApprovalStatus.choices, default=ApprovalStatus.PENDING,
                              db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")),
                                   name="approval_expires_after_creation"),
            models.UniqueConstraint(fields=["agent"], condition=Q(status=ApprovalStatus.PENDING),
                                    name="approval_one_pending_per_agent"),
            models.CheckConstraint(condition=~Q(status=ApprovalStatus.DENIED) | ~Q(reason=""),
                                   name="approval_denial_has_reason"),
            models.CheckConstraint(
                condition=~Q(status__in=[ApprovalStatus.APPROVED, ApprovalStatus.DENIED])
                | Q(decided_by__isnull=False, decided_at__isnull=False),
                name="approval_decision_has_decider",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"approval #{self.pk} for {self.blueprint}"
