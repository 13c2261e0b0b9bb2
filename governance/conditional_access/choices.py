"""Choices of this sub-app's models."""

from django.db import models


class PolicyState(models.TextChoices):
    ON = "on", "On"
    REPORT_ONLY = "report_only", "Report-only"
    OFF = "off", "Off"


class PolicyGrant(models.TextChoices):
    BLOCK = "block", "Block"
    ALLOW = "allow", "Allow only when the conditions hold"


class RiskLevel(models.TextChoices):
    NONE = "none", "None"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
