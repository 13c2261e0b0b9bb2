"""Access review campaigns, their instances, items, reviewers and decisions."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from governance.access.models import AccessPackage, Assignment
from governance.reviews.choices import (
    PermissionAdvice,
    PermissionDecision,
    PermissionSource,
    ReviewDecisionKind,
    ReviewerKind,
    ReviewInstanceStatus,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
)
from portal.models import Workspace


class AccessReview(models.Model):
    """An access review campaign (R19): one-off or recurring, over a scope, decided by its reviewers.

    Each period of the campaign is a ``ReviewInstance``; its items are fixed when it opens, so a review answers
    "should this agent still have this access?" about the access held at that moment.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="access_reviews")
    name = models.CharField(max_length=150)
    description = models.TextField(blank=True)
    scope_kind = models.CharField(max_length=30, choices=ReviewScope.choices, default=ReviewScope.PACKAGES)
    packages = models.ManyToManyField(AccessPackage, blank=True, related_name="access_reviews")
    reviewer_kind = models.CharField(max_length=20, choices=ReviewerKind.choices, default=ReviewerKind.SPONSORS)
    named_reviewers = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    fallback_reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                          related_name="+", help_text="Reviews the items that have no reviewer.")
    recurrence = models.CharField(max_length=20, choices=ReviewRecurrence.choices, default=ReviewRecurrence.ONCE)
    starts_at = models.DateTimeField(help_text="The start of the first period.")
    duration_days = models.PositiveIntegerField(default=14)
    auto_apply = models.BooleanField(default=True, help_text="Apply the results when an instance ends.")
    no_response = models.CharField(max_length=20, choices=ReviewNoResponse.choices,
                                   default=ReviewNoResponse.RECOMMENDATION)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    active = models.BooleanField(default=True, help_text="Inactive campaigns open no new instances.")

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="review_unique_name"),
            models.CheckConstraint(condition=Q(duration_days__gt=0), name="review_duration_positive"),
        ]
        indexes = [models.Index(fields=["active", "starts_at"])]

    def __str__(self) -> str:
        return self.name


class ReviewInstance(models.Model):
    """One period of a campaign: open → closed (decisions resolved) → applied (R19). Never twice per period."""

    campaign = models.ForeignKey(AccessReview, on_delete=models.CASCADE, related_name="instances")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=20, choices=ReviewInstanceStatus.choices,
                              default=ReviewInstanceStatus.OPEN)
    reminders_sent = models.JSONField(default=list, blank=True, help_text="'halfway' and 'last_day', once each.")
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                  related_name="+")
    applied_at = models.DateTimeField(null=True, blank=True)
    evidence_since = models.DateTimeField(null=True, blank=True,
                                          help_text="The start of the window in which each permission's use counts.")

    class Meta:
        ordering = ["-starts_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "starts_at"], name="review_instance_once_per_period"),
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")),
                                   name="review_instance_ends_after_start"),
            models.CheckConstraint(condition=Q(status=ReviewInstanceStatus.OPEN) | Q(closed_at__isnull=False),
                                   name="review_instance_closed_has_time"),
        ]
        indexes = [models.Index(fields=["status", "ends_at"])]

    def __str__(self) -> str:
        return f"{self.campaign} ({self.starts_at:%Y-%m-%d})"


class ReviewItem(models.Model):
    """One question of an instance — should this agent keep this access? — with its evidence (R19).

    ``final_decision`` is resolved when the instance closes (the reviewers' decisions, else the campaign's
    no-response default); ``applied_at`` is set once the result has been carried out.
    """

    instance = models.ForeignKey(ReviewInstance, on_delete=models.CASCADE, related_name="items")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="review_items")
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="review_items")
    access = models.CharField(max_length=500, help_text="The access under review, as a reviewer reads it.")
    granted_at = models.DateTimeField(null=True, blank=True)
    granted_by = models.CharField(max_length=300, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    recommendation = models.CharField(max_length=20, choices=ReviewDecisionKind.choices)
    recommendation_reason = models.CharField(max_length=300)
    reviewers = models.ManyToManyField(settings.AUTH_USER_MODEL, through="ReviewItemReviewer", related_name="+")
    final_decision = models.CharField(max_length=20, choices=ReviewDecisionKind.choices, blank=True)
    final_source = models.CharField(max_length=20, blank=True, help_text="'reviewer' or 'default'.")
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_result = models.CharField(max_length=200, blank=True)
    permission_advice = models.TextField(blank=True, help_text="The recommendation per permission, in words.")

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(recommendation__in=[ReviewDecisionKind.APPROVE,
                                                                   ReviewDecisionKind.DENY]),
                                   name="review_item_recommends_approve_or_deny"),
            models.CheckConstraint(condition=Q(final_decision__in=["", ReviewDecisionKind.APPROVE,
                                                                   ReviewDecisionKind.DENY]),
                                   name="review_item_final_is_approve_or_deny"),
        ]
        indexes = [models.Index(fields=["instance", "final_decision", "applied_at"])]

    def __str__(self) -> str:
        return f"{self.agent}: {self.access}"


class ReviewItemPermission(models.Model):
    """One permission an item's agent holds, with its evidence of use in the review window and what it suggests
    (docs/design.md, R32); a reviewer may keep or remove it on its own.

    A permission from an access package names its ``assignment``: an assignment holds its package whole, so removing
    its permissions ends the assignment once every one of them is removed. A permission that comes with the agent's
    definition (R3) cannot be removed on its own; its advice, unused, is to keep the agent or retire it.
    """

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="permissions")
    permission = models.CharField(max_length=150)
    source = models.CharField(max_length=20, choices=PermissionSource.choices)
    assignment = models.ForeignKey(Assignment, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    used = models.BooleanField(help_text="Used in the review window.")
    advice = models.CharField(max_length=20, choices=PermissionAdvice.choices)
    decision = models.CharField(max_length=20, choices=PermissionDecision.choices, blank=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_result = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["item", "permission", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["item", "permission", "assignment"], nulls_distinct=False,
                                    name="review_permission_once_per_item_source"),
            models.CheckConstraint(condition=~Q(decision=PermissionDecision.REMOVE)
                                   | Q(source=PermissionSource.PACKAGE),
                                   name="review_permission_removes_only_package_grants"),
        ]

    def __str__(self) -> str:
        return f"{self.permission} of item {self.item_id}"


class ReviewItemReviewer(models.Model):
    """Who reviews an item; ``instance`` is copied in so "my open items" is one indexed lookup."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey(ReviewInstance, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["item", "reviewer"], name="review_item_reviewer_once")]
        indexes = [models.Index(fields=["reviewer", "instance"])]

    def __str__(self) -> str:
        return f"{self.reviewer_id} reviews item {self.item_id}"


class ReviewDecision(models.Model):
    """A reviewer's decision on an item; changed (by the service, audited) until the instance ends (R19)."""

    item = models.ForeignKey(ReviewItem, on_delete=models.CASCADE, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=20, choices=ReviewDecisionKind.choices)
    justification = models.TextField(blank=True)
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["decided_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["item", "reviewer"], name="review_decision_one_per_reviewer"),
            models.CheckConstraint(condition=~Q(decision=ReviewDecisionKind.DENY) | ~Q(justification=""),
                                   name="review_deny_has_justification"),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.decision} {self.item}"
