"""Choices of runs."""

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REFUSED = "refused", "Refused"
    CANCELLED = "cancelled", "Cancelled"


class RunTrigger(models.TextChoices):
    MANUAL = "manual", "Started by a person"
    SCHEDULE = "schedule", "Schedule"
    API = "api", "API"
