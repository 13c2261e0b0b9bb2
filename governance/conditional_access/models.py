"""Conditional-access policies for agents."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.models import Agent
from governance.conditional_access.choices import PolicyGrant, PolicyState, RiskLevel


class ConditionalAccessPolicy(models.Model):
    """A conditional-access policy for agents (R20): targets, conditions, a grant and a state.

    Targets (any clause matches, exclusions win): every agent, agent kinds (assistive, autonomous, agent user),
    publisher kinds, named agents, custom security attribute rules ``{"key", "op": equals|in|starts_with,
    "value"}``. Conditions (all must hold; an empty one always holds): agent risk at or above a level, client IP
    ranges (CIDR), UTC time windows ``{"days": [0-6, Monday = 0], "start": "HH:MM", "end": "HH:MM"}``, the resource
    asked for is one of ``resources`` (identifiers, R26; the portal API is ``PORTAL_BASE_URL``), the credential the
    client authenticated with is one of ``credential_types`` (``agents.choices.CredentialType``, R28).
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
    resources = models.JSONField(default=list, blank=True,
                                 help_text="Resource identifiers (token audiences); empty: any resource.")
    credential_types = models.JSONField(default=list, blank=True,
                                        help_text="Credential types (secret, key, federated); empty: any credential.")
    state_changed_at = models.DateTimeField(default=timezone.now,
                                            help_text="Since when the policy has been in its current state.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "conditional access policies"

    def __str__(self) -> str:
        return self.name
