"""Governance records (DESIGN §1). State changes live in the capability modules (``approvals``, …)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent, Blueprint
from governance.choices import (
    ActorKind,
    ApprovalStatus,
    ApproverKind,
    AssignmentStatus,
    DetectionKind,
    DetectionStatus,
    DurationKind,
    GrantType,
    PolicyGrant,
    PolicyState,
    Requestors,
    ReviewDecisionKind,
    ReviewerKind,
    ReviewInstanceStatus,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
    RiskLevel,
    SignInOutcome,
)
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

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["workspace", "name"], name="package_unique_name")]

    def __str__(self) -> str:
        return self.name


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

    def is_active(self, now=None) -> bool:
        """R18: an assignment past its end is inactive now, whether or not the expiry job has run."""
        return self.status == AssignmentStatus.ACTIVE and self.expires_at > (now or timezone.now())


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
    assignment = models.ForeignKey("Assignment", null=True, blank=True, on_delete=models.PROTECT,
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


class ConditionalAccessPolicy(models.Model):
    """A conditional-access policy for agents (R20): targets, conditions, a grant and a state.

    Targets (any clause matches, exclusions win): every agent, agent kinds (assistive, autonomous, agent user),
    publisher kinds, named agents, custom security attribute rules ``{"key", "op": equals|in|starts_with,
    "value"}``. Conditions (all must hold; an empty one always holds): agent risk at or above a level, client IP
    ranges (CIDR), UTC time windows ``{"days": [0-6, Monday = 0], "start": "HH:MM", "end": "HH:MM"}``.
    """

    name = models.CharField(max_length=150, unique=True)
    description = models.TextField(blank=True)
    state = models.CharField(max_length=20, choices=PolicyState.choices, default=PolicyState.REPORT_ONLY)
    grant = models.CharField(max_length=10, choices=PolicyGrant.choices, default=PolicyGrant.BLOCK)
    all_agents = models.BooleanField(default=False)
    agent_kinds = models.JSONField(default=list, blank=True)
    publisher_kinds = models.JSONField(default=list, blank=True)
    agents = models.ManyToManyField(Agent, blank=True, related_name="+")
    attribute_rules = models.JSONField(default=list, blank=True)
    excluded_agents = models.ManyToManyField(Agent, blank=True, related_name="+")
    min_risk_level = models.CharField(max_length=10, choices=RiskLevel.choices, blank=True)
    ip_ranges = models.JSONField(default=list, blank=True)
    time_windows = models.JSONField(default=list, blank=True)
    state_changed_at = models.DateTimeField(default=timezone.now,
                                            help_text="Since when the policy has been in its current state.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "conditional access policies"

    def __str__(self) -> str:
        return self.name


class ResourceServer(models.Model):
    """A service that validates agents' tokens by introspection (RFC 7662); its secret is stored as an HMAC."""

    name = models.CharField(max_length=150, unique=True)
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AccessToken(models.Model):
    """An access token issued to an agent (R22). Only a hash of the value is stored; the value is returned once.

    ``subject`` is the user the token speaks for (a ``user_account`` agent's user, or the user whose token was
    exchanged, R13); ``actor_kind`` says which. Introspection also checks the agent and the subject are still
    active, so disabling either makes the token inactive at once; revocation sets ``revoked_at``.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    # Indexes are few on purpose: every token request inserts a row (the composite index below serves the agent).
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="access_tokens",
                              db_index=False,
                              help_text="Empty for a person's own token (to be exchanged by an agent, R13).")
    client_id = models.CharField(max_length=64)
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.AGENT)
    grant_type = models.CharField(max_length=60, choices=GrantType.choices, default=GrantType.CLIENT_CREDENTIALS)
    scopes = models.JSONField(default=list)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               db_index=False, help_text="The subject token a token exchange started from.")
    run = models.ForeignKey("agents.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            db_index=False,
                            help_text="The run this token was issued to (its reads and an executor's callback).")
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["agent", "revoked_at", "expires_at"], name="token_agent_live")]

    def __str__(self) -> str:
        return f"token #{self.pk} for {self.client_id}"


class SignIn(models.Model):
    """One token request, successful or not (the sign-in log). Never holds a secret or a token value."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Every token request inserts a row: two indexes (time, agent + time) serve the log's pages and the risk job.
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="sign_ins",
                              db_index=False)
    client_id = models.CharField(max_length=64, blank=True)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.UNKNOWN)
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", db_index=False)
    ip = models.GenericIPAddressField(null=True, blank=True)
    grant_type = models.CharField(max_length=60, blank=True)
    requested_scopes = models.JSONField(default=list, blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=10, choices=SignInOutcome.choices)
    error = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    policies = models.JSONField(default=list, blank=True,
                                help_text="Each policy that applied: id, name, state, outcome, reason.")
    token = models.ForeignKey(AccessToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              db_index=False)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["agent", "-at"], name="signin_agent_at")]

    def __str__(self) -> str:
        return f"{self.client_id or '?'} {self.outcome} at {self.at:%Y-%m-%d %H:%M:%S}"


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
