"""OAuth clients people use (each one an agent in the registry), their consents, codes and refresh tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.models import Agent
from governance.oauth.choices import AuthMethod, ClientApproval, ClientSource


class OAuthClient(models.Model):
    """How an agent of kind "client application" is registered as an OAuth client (R27): its redirect URIs, how it
    authenticates, what it may ask for, and whether an administrator has approved it. The agent carries everything
    governance needs (workspace, owners, sponsors, status, conditional access, risk, reviews)."""

    agent = models.OneToOneField(Agent, on_delete=models.PROTECT, related_name="oauth_client")
    client_id = models.CharField(max_length=300, unique=True,
                                 help_text="What the client presents: a generated id, or its metadata document URL.")
    source = models.CharField(max_length=20, choices=ClientSource.choices, default=ClientSource.STATIC)
    client_name = models.CharField(max_length=200, blank=True)
    client_uri = models.CharField(max_length=500, blank=True)
    logo_uri = models.CharField(max_length=500, blank=True)
    application_type = models.CharField(max_length=10, default="web")
    redirect_uris = models.JSONField(default=list, blank=True)
    grant_types = models.JSONField(default=list, blank=True)
    response_types = models.JSONField(default=list, blank=True)
    token_endpoint_auth_method = models.CharField(max_length=30, choices=AuthMethod.choices, default=AuthMethod.NONE)
    allowed_scopes = models.JSONField(default=list, blank=True,
                                      help_text="The scopes this client may ask for (empty: any scope).")
    metadata = models.JSONField(default=dict, blank=True, help_text="The client metadata as registered or fetched.")
    registration_token_hash = models.CharField(max_length=64, blank=True,
                                               help_text="RFC 7592: a hash of the registration access token.")
    approval = models.CharField(max_length=10, choices=ClientApproval.choices, default=ClientApproval.PENDING,
                                db_index=True)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    metadata_fetched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.client_name or self.client_id


class Consent(models.Model):
    """A person's consent to a client for a resource and scopes; remembered until revoked (by the person or an
    administrator). At most one live consent per person × client × resource."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_consents")
    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="consents")
    resource = models.CharField(max_length=300)
    scopes = models.JSONField(default=list)
    granted_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["-granted_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["user", "client", "resource"],
                                               condition=models.Q(revoked_at__isnull=True),
                                               name="one_live_consent")]

    def __str__(self) -> str:
        return f"{self.user} → {self.client} ({self.resource})"


class AuthorizationCode(models.Model):
    """An authorization code (single use, short-lived); only its hash is kept. ``family`` names everything issued
    from it (access and refresh tokens), so that a reused code revokes them all."""

    code_hash = models.CharField(max_length=64, unique=True)
    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    redirect_uri = models.CharField(max_length=2000)
    resource = models.CharField(max_length=300)
    scopes = models.JSONField(default=list)
    offline_access = models.BooleanField(default=False)
    code_challenge = models.CharField(max_length=128)
    family = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"code #{self.pk} for {self.client}"


class RefreshToken(models.Model):
    """A refresh token (only its hash is kept). Each use replaces it with a new one in the same ``family``; using a
    replaced one again revokes the whole family (R27)."""

    token_hash = models.CharField(max_length=64, unique=True)
    family = models.CharField(max_length=64, db_index=True)
    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    resource = models.CharField(max_length=300)
    scopes = models.JSONField(default=list)
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=60, blank=True)

    class Meta:
        ordering = ["-issued_at", "-pk"]

    def __str__(self) -> str:
        return f"refresh token #{self.pk} ({self.family[:8]}…)"
