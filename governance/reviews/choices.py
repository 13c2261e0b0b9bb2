"""Choices of this sub-app's models."""

from django.db import models


class ReviewScope(models.TextChoices):
    PACKAGES = "packages", "Assignments of access packages"
    WORKSPACE_AGENTS = "workspace_agents", "All agents of the workspace"
    PARTNER_AGENTS = "partner_agents", "All partner agents of the workspace"


class ReviewerKind(models.TextChoices):
    SPONSORS = "sponsors", "Each agent's sponsors"
    OWNERS = "owners", "Each agent's owners"
    NAMED = "named", "Named people"


class ReviewRecurrence(models.TextChoices):
    ONCE = "once", "One-off"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"


class ReviewNoResponse(models.TextChoices):
    KEEP = "keep", "Keep the access"
    REMOVE = "remove", "Remove the access"
    RECOMMENDATION = "recommendation", "Follow the recommendation"


class ReviewInstanceStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    APPLIED = "applied", "Results applied"


class ReviewDecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    DENY = "deny", "Deny"
    DONT_KNOW = "dont_know", "Don't know"


class PermissionAdvice(models.TextChoices):
    """What the evidence of use says about one permission of an item (docs/design.md, R32)."""

    KEEP = "keep", "Keep: used"
    REMOVE = "remove", "Remove: not used"
    RETIRE_OR_KEEP = "retire_or_keep", "Not used, but it comes with the agent: keep the agent or retire it"


class PermissionDecision(models.TextChoices):
    KEEP = "keep", "Keep"
    REMOVE = "remove", "Remove"


class PermissionSource(models.TextChoices):
    BLUEPRINT = "blueprint", "Comes with the agent"
    PACKAGE = "package", "Access package"
