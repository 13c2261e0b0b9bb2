"""What the authorization server keeps: resource servers, access tokens, the sign-in log and risk."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from agents.choices import CredentialType
from agents.models import Agent
from governance.signin.choices import ActorKind, GrantType, SignInOutcome


class ResourceServer(models.Model):
    """A service that accepts the portal's tokens: an API, an MCP server, or an agent (R26).

    Its ``identifier`` (an absolute URI) is the audience of the tokens issued for it (RFC 8707): clients name it in
    the ``resource`` parameter, and a token carries only ``scopes`` it accepts. A resource server without an
    identifier only introspects (RFC 7662). Its secret is stored as an HMAC."""

    name = models.CharField(max_length=150, unique=True)
    client_id = models.CharField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    identifier = models.CharField(max_length=300, unique=True, null=True, blank=True,
                                  help_text="An absolute URI: the audience of tokens issued for this resource.")
    scopes = models.JSONField(default=list, blank=True, help_text="The scopes this resource accepts.")
    agent = models.OneToOneField(Agent, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="resource_server",
                                 help_text="Set when the resource is an agent that authenticates incoming requests.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AccessToken(models.Model):
    """An access token issued to an agent (R22). Only a hash of the value is stored; the value is returned once.

    ``subject`` is the user the token speaks for (a ``user_account`` agent's user, or the user whose token was
    exchanged, R13); ``actor_kind`` says which. Introspection also checks the agent and the subject are still
    active, so disabling either makes the token inactive at once; revocation sets ``revoked_at``.
    """

    token_hash = models.CharField(max_length=64, unique=True)
    # Indexes are few on purpose: every token request inserts a row (the composite index below serves the agent).
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="access_tokens",
                              db_index=False,
                              help_text="Empty for a person's own token (to be exchanged by an agent).")
    client_id = models.CharField(max_length=64)
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+")
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.AGENT)
    grant_type = models.CharField(max_length=60, choices=GrantType.choices, default=GrantType.CLIENT_CREDENTIALS)
    scopes = models.JSONField(default=list)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                               db_index=False, help_text="The subject token a token exchange started from.")
    run = models.ForeignKey("runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                            db_index=False,
                            help_text="The run this token was issued to (its reads and an executor's callback).")
    issued_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=60, blank=True)
    audience = models.CharField(max_length=300, blank=True, help_text="The resource this token is for (aud).")
    family = models.CharField(max_length=64, blank=True,
                              help_text="The authorization (code and refresh tokens) this token came from, if any.")
    # docs/design.md, "Usage": set when a resource server introspects the token as active, when it authenticates a
    # call to the portal API, or when a run's token is issued; moved at most once a minute (``tokens.mark_used``).
    last_used_at = models.DateTimeField(null=True, blank=True,
                                        help_text="The token's last use: introspected, at the portal API, or a run.")

    class Meta:
        ordering = ["-issued_at"]
        indexes = [models.Index(fields=["agent", "revoked_at", "expires_at"], name="token_agent_live"),
                   models.Index(fields=["family"], condition=~models.Q(family=""), name="token_family"),
                   # The usage selectors' tail (tokens used since the fold): only used tokens are in it.
                   models.Index(fields=["last_used_at"], condition=models.Q(last_used_at__isnull=False),
                                name="token_last_used")]

    def __str__(self) -> str:
        return f"token #{self.pk} for {self.client_id}"


class SignIn(models.Model):
    """One token request, successful or not (the sign-in log). Never holds a secret or a token value.

    On PostgreSQL the table is partitioned by day on ``at`` (``governance.signin.partitions``): the database's
    primary key is ``(id, at)`` while Django keeps ``id`` (unique: one identity sequence feeds every partition), and
    no table may hold a foreign key to a sign-in."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    # Every token request inserts a row: few indexes (time, agent + time, IP + time and partial ones) serve the log.
    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT, related_name="sign_ins",
                              db_index=False)
    client_id = models.CharField(max_length=64, blank=True)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.UNKNOWN)
    subject = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="+", db_index=False)
    ip = models.GenericIPAddressField(null=True, blank=True)
    grant_type = models.CharField(max_length=60, blank=True)
    requested_scopes = models.JSONField(default=list, blank=True)
    resource = models.CharField(max_length=300, blank=True, help_text="The resource (audience) asked for.")
    granted_scopes = models.JSONField(default=list, blank=True)
    outcome = models.CharField(max_length=10, choices=SignInOutcome.choices)
    error = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=300, blank=True)
    policies = models.JSONField(default=list, blank=True,
                                help_text="Each policy that applied: id, name, state, outcome, reason.")
    token = models.ForeignKey(AccessToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              db_index=False)
    credential_type = models.CharField(max_length=20, blank=True, choices=CredentialType.choices,
                                       help_text="How the client authenticated (or tried to).")
    credential_issuer = models.CharField(max_length=255, blank=True,
                                         help_text="The issuer of a federated credential's token.")

    class Meta:
        ordering = ["-at", "-pk"]
        # The log's filters each read an index or only the partitions of their time window (docs/design.md, "The
        # sign-in log at volume"). Partial indexes hold only the rare rows (failures, people, unknown clients), so
        # the token endpoint's insert of an ordinary success touches four indexes (key, time, agent, IP), not seven.
        indexes = [models.Index(fields=["agent", "-at"], name="signin_agent_at"),
                   models.Index(fields=["outcome", "-at"], condition=~models.Q(outcome="success"),
                                name="signin_not_success_at"),
                   models.Index(fields=["actor_kind", "-at"], condition=~models.Q(actor_kind="agent"),
                                name="signin_not_agent_at"),
                   models.Index(fields=["client_id", "-at"], condition=models.Q(agent__isnull=True),
                                name="signin_unknown_client_at"),
                   models.Index(fields=["ip", "-at"], name="signin_ip_at")]

    def __str__(self) -> str:
        return f"{self.client_id or '?'} {self.outcome} at {self.at:%Y-%m-%d %H:%M:%S}"




class SignInExport(models.Model):
    """A sign-in export too large to stream in a request (more than ``EXPORT_MAX_ROWS`` rows): a Celery worker
    writes the file, with progress, and its requester downloads it once (docs/design.md, "The sign-in log at
    volume"). The file is deleted as it is handed over, or by ``expire_sign_in_exports`` past ``expires_at``;
    ``filters`` are the log's filters as the requester set them, applied again as the requester when it runs."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Ready"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    file_format = models.CharField(max_length=10, default="csv")
    filters = models.JSONField(default=dict, blank=True)
    total = models.PositiveBigIntegerField(default=0)
    done = models.PositiveBigIntegerField(default=0)
    file_name = models.CharField(max_length=100, blank=True, help_text="Under EXPORT_DIR; empty once deleted.")
    downloaded_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(expires_at__gt=models.F("created_at")),
                                              name="signin_export_expires_after_creation")]

    def __str__(self) -> str:
        return f"sign-in export #{self.pk}"

    @property
    def percent(self) -> int:
        return min(100, int(100 * self.done / self.total)) if self.total else 0
