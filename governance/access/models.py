"""Access packages, their assignment policies and time-bound assignments."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from governance.access.choices import ApproverKind, AssignmentStatus, DurationKind, Requestors
from portal.models import Workspace


class AccessPackage(models.Model):
    """A bundle of extra permissions for agents in one workspace (R17). Privileged permissions are refused (R4)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="access_packages")
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)
    permissions = models.ManyToManyField("portal.Permission", related_name="access_packages")
    incompatible_with = models.ManyToManyField("self", blank=True, symmetrical=True,
                                               help_text="Separation of duties: an agent never holds both.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # Removal retires a package (docs/design.md, R29): its records stay, nobody requests, edits or assigns it again.
    removed_at = models.DateTimeField(null=True, blank=True)
    removed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    removal_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        # A removed package keeps its name in its history, and the name is free again for a new package.
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], condition=Q(removed_at__isnull=True),
                                               name="package_unique_name_not_removed")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None


class AssignmentPolicy(models.Model):
    """Who may request a package, who approves (one or two stages), for how long, and whether it extends (R17)."""

    package = models.OneToOneField(AccessPackage, on_delete=models.CASCADE, related_name="policy")
    requestors = models.CharField(max_length=30, choices=Requestors.choices, default=Requestors.SPONSORS_AND_OWNERS)
    approver_kind = models.CharField(max_length=30, choices=ApproverKind.choices,
                                     default=ApproverKind.WORKSPACE_OWNERS)
    approvers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    second_approver_kind = models.CharField(max_length=30, choices=ApproverKind.choices, default=ApproverKind.NONE)
    second_approvers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    duration_kind = models.CharField(max_length=20, choices=DurationKind.choices, default=DurationKind.DAYS)
    duration_value = models.PositiveIntegerField(default=30, help_text="Days or hours, by the duration kind.")
    fixed_end = models.DateTimeField(null=True, blank=True)
    max_hours = models.PositiveIntegerField(default=24 * 90, help_text="No assignment lasts longer in total.")
    allow_extension = models.BooleanField(default=True)
    extension_needs_approval = models.BooleanField(default=True)
    justification_required = models.BooleanField(default=True)
    request_ttl_days = models.PositiveIntegerField(default=7, help_text="Undecided requests expire after this.")

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(duration_kind="fixed_end") | Q(fixed_end__isnull=False),
                                   name="policy_fixed_end_given"),
            models.CheckConstraint(condition=Q(max_hours__gt=0), name="policy_max_positive"),
        ]

    def __str__(self) -> str:
        return f"policy of {self.package}"


class Assignment(models.Model):
    """An agent's hold on a package: request → pending → active → (extended) → expired or revoked (R18).

    Every active assignment has an end; past ``expires_at`` it counts as inactive even before the job runs.
    """

    package = models.ForeignKey(AccessPackage, on_delete=models.PROTECT, related_name="assignments")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="assignments")
    status = models.CharField(max_length=20, choices=AssignmentStatus.choices, default=AssignmentStatus.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT,
                                     related_name="+")
    justification = models.TextField(blank=True)
    requested_at = models.DateTimeField(default=timezone.now)
    request_expires_at = models.DateTimeField()
    requested_hours = models.PositiveIntegerField(null=True, blank=True)
    stage = models.PositiveSmallIntegerField(default=1)
    first_approver = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                       related_name="+")
    second_approver = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                        related_name="+")
    starts_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    extension_until = models.DateTimeField(null=True, blank=True, help_text="A requested extension, pending.")
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    reminded_days = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-requested_at", "-pk"]
        indexes = [models.Index(fields=["status", "expires_at"]), models.Index(fields=["agent", "status"]),
                   models.Index(fields=["status", "request_expires_at"])]
        constraints = [
            models.CheckConstraint(condition=~Q(status="active") | Q(starts_at__isnull=False, expires_at__isnull=False),
                                   name="assignment_active_has_an_end"),
            models.CheckConstraint(condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("starts_at")),
                                   name="assignment_starts_before_it_ends"),
            models.UniqueConstraint(fields=["package", "agent"], condition=Q(status__in=["pending", "active"]),
                                    name="assignment_one_open_per_package"),
        ]

    def __str__(self) -> str:
        return f"{self.package} → {self.agent}"

    @property
    def access_ends(self):
        """When the agent's access from this assignment ends: the earlier of its end and the agent's expiry
        (``governance.access.ends``, the one definition every page, notification and review uses)."""
        from governance.access.ends import assignment_ends

        return assignment_ends(self)

    def is_active(self, now=None) -> bool:
        """R18: an assignment past its end is inactive now, whether or not the expiry job has run."""
        return self.status == AssignmentStatus.ACTIVE and self.expires_at > (now or timezone.now())
