"""Choices of this sub-app's models."""

from django.db import models


class Requestors(models.TextChoices):
    SPONSORS = "sponsors", "The agent's sponsors"
    OWNERS = "owners", "The agent's owners"
    SPONSORS_AND_OWNERS = "sponsors_and_owners", "Sponsors and owners"


class ApproverKind(models.TextChoices):
    NONE = "none", "No approval"
    NAMED = "named", "Named people"
    GLOBAL_ADMINISTRATORS = "global_administrators", "Global Administrators"
    WORKSPACE_OWNERS = "workspace_owners", "The workspace's owners"


class DurationKind(models.TextChoices):
    FIXED_END = "fixed_end", "Until a fixed date"
    DAYS = "days", "A number of days"
    HOURS = "hours", "A number of hours"


class AssignmentStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    DENIED = "denied", "Denied"
    REQUEST_EXPIRED = "request_expired", "Request expired"
