"""Enumerations shared by the portal layer."""

from django.db import models


class UserKind(models.TextChoices):
    HUMAN = "human", "Human"
    AGENT_USER = "agent_user", "Agent user"


class PermissionKind(models.TextChoices):
    APPLICATION = "application", "Application"
    DELEGATED = "delegated", "Delegated"


class Product(models.TextChoices):
    """Whose data a permission opens. Every product except the portal's own and partners' is Microsoft data (R14)."""

    ENTRA = "entra", "Microsoft Entra / Microsoft Graph"
    DEFENDER = "defender", "Microsoft Defender XDR"
    INTUNE = "intune", "Microsoft Intune"
    SENTINEL = "sentinel", "Microsoft Sentinel"
    PURVIEW = "purview", "Microsoft Purview"
    PORTAL = "portal", "Agent Identity Portal API"
    PARTNER = "partner", "Partner product"
    RESOURCE = "resource", "Registered resource server"


MICROSOFT_DATA_PRODUCTS = frozenset(
    {Product.ENTRA, Product.DEFENDER, Product.INTUNE, Product.SENTINEL, Product.PURVIEW}
)


class WorkspaceRole(models.TextChoices):
    OWNER = "owner", "Owner"
    CONTRIBUTOR = "contributor", "Contributor"


class ActorKind(models.TextChoices):
    HUMAN = "human", "Human"
    AGENT = "agent", "Agent"
    AGENT_USER = "agent_user", "Agent user"
    SYSTEM = "system", "System"


class JobTrigger(models.TextChoices):
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Run now"
    COMMAND = "command", "Command line"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ChangeState(models.TextChoices):
    """Where a high-impact change stands (docs/four-eyes.md)."""

    PENDING = "pending", "Waiting for a second administrator"
    APPROVED = "approved", "Approved and applied"
    REJECTED = "rejected", "Rejected"
    APPLIED_BREAK_GLASS = "applied_break_glass", "Applied in an emergency, waiting for review"
    REVIEWED = "reviewed", "Applied in an emergency, reviewed"
