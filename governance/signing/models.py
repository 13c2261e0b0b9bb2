"""Signing keys for access tokens (JWTs, RFC 9068)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from governance.signing.choices import KeyState


class SigningKey(models.Model):
    """One key pair. The public half is published at the JWKS URL; the private half is kept encrypted with a key
    derived from settings (``governance.signing.keys``) and is never shown, logged or audited."""

    kid = models.CharField(max_length=64, unique=True)
    alg = models.CharField(max_length=10, default="ES256")
    public_jwk = models.JSONField()
    private_key = models.BinaryField(help_text="The private key, encrypted; emptied when the key is removed.")
    state = models.CharField(max_length=20, choices=KeyState.choices, default=KeyState.PUBLISHED, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # One key signs and at most one waits to take over, so two workers rotating at once cannot both publish
        # (docs/oauth.md, "Signing keys").
        constraints = [models.UniqueConstraint(fields=["state"], condition=models.Q(state="active"),
                                               name="one_active_signing_key"),
                       models.UniqueConstraint(fields=["state"], condition=models.Q(state="published"),
                                               name="one_waiting_signing_key")]

    def __str__(self) -> str:
        return f"{self.alg} key {self.kid} ({self.get_state_display().lower()})"
