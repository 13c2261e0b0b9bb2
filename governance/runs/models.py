"""Sessions, runs and feedback: an agent at work under its own governed identity."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from governance.runs.choices import RunStatus, RunTrigger


class Session(models.Model):
    """A person's working session with an agent: a timeline of runs, their inputs and outputs (records only;
    starting a run is a governance service, because it needs the decision point)."""

    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="sessions")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="session_agent_created")]

    def __str__(self) -> str:
        return self.title or f"Session #{self.pk} with {self.agent}"


class Run(models.Model):
    """One run of an agent: authorised at start like a token request (R1, R13, R20); refused starts are kept."""

    session = models.ForeignKey(Session, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="runs")
    started_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+", help_text="Empty for a scheduled run.")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED, db_index=True)
    trigger = models.CharField(max_length=20, choices=RunTrigger.choices, default=RunTrigger.MANUAL)
    inputs = models.JSONField(default=dict, blank=True)
    scopes = models.JSONField(default=list, blank=True, help_text="What the run may read, decided at its start.")
    delegated_for = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="+", help_text="The person whose rights bound the run.")
    refused_reason = models.CharField(max_length=300, blank=True)
    policies = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    time_limit_seconds = models.PositiveIntegerField(default=300)
    deadline_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                       help_text="Set when the run starts: a run still going then has timed out.")
    cancelled_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="+")
    error = models.CharField(max_length=500, blank=True)
    summary = models.TextField(blank=True)
    findings = models.JSONField(default=list, blank=True)
    reads = models.JSONField(default=list, blank=True, help_text="The API reads the run made with its token.")

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="run_agent_created")]

    def __str__(self) -> str:
        return f"run #{self.pk} of {self.agent} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status not in (RunStatus.QUEUED, RunStatus.RUNNING)


class Feedback(models.Model):
    """A person's rating of a run's output, with a comment: kept as the agent's memory, listed on the agent."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="feedback")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="feedback")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    rating = models.PositiveSmallIntegerField(choices=[(i, f"{i} / 5") for i in range(1, 6)])
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["agent", "-created_at"], name="feedback_agent_created")]
        constraints = [models.UniqueConstraint(fields=["run", "author"], name="feedback_one_per_person_and_run"),
                       models.CheckConstraint(condition=Q(rating__gte=1) & Q(rating__lte=5),
                                              name="feedback_rating_1_to_5")]

    def __str__(self) -> str:
        return f"{self.rating}/5 on run #{self.run_id} by {self.author}"
