"""Choices of risk detections."""

from __future__ import annotations

from django.db import models


class DetectionKind(models.TextChoices):
    NEW_SCOPE = "new_scope", "Scope never requested before"
    REQUEST_BURST = "request_burst", "Burst of token requests"
    FAILED_CREDENTIALS = "failed_credentials", "Repeated failed client authentication"
    ORPHANED_USE = "orphaned_use", "Used while orphaned (no sponsor)"
    ADMIN_CONFIRMED = "admin_confirmed", "Confirmed compromised by an administrator"

class DetectionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONFIRMED_COMPROMISED = "confirmed_compromised", "Confirmed compromised"
    CONFIRMED_SAFE = "confirmed_safe", "Confirmed safe"
    DISMISSED = "dismissed", "Dismissed"
