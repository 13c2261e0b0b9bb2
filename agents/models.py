"""The agent registry: publishers, skills, blueprints, agents, identities, agent users, credentials.

State changes live in the service modules (``catalog``, ``manifests``, ``registry``, ``bulk``). Per-agent
ownership and sponsorship are django-guardian object permissions kept in direct-foreign-key tables
(``AgentUserObjectPermission``), so "agents this person sponsors" is one indexed join.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from agents.choices import (
    SPONSORSHIP_CURRENT,
    AgentKind,
    AgentScope,
    AgentStatus,
    DisabledBy,
    GrantSource,
    IdentityType,
    PublisherKind,
    SponsorshipState,
)
from portal.choices import Product
from portal.models import Permission, Workspace


class Publisher(models.Model):
    """Who publishes a skillset or an agent manifest: Microsoft, a partner, or the organisation itself."""

    name = models.CharField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=PublisherKind.choices)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skillset(models.Model):
    """A Security Copilot plugin (``PluginName`` in the skills list) and the Microsoft product data it reads."""

    name = models.CharField(max_length=150, unique=True)
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="skillsets")
    product = models.CharField(max_length=20, choices=Product.choices, blank=True,
                               help_text="The Microsoft product whose data this skillset reads, if any.")
    description = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Skill(models.Model):
    """A skill and the data permissions it needs (the skill map, editable by owners, audited)."""

    skillset = models.ForeignKey(Skillset, on_delete=models.PROTECT, related_name="skills")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    permissions = models.ManyToManyField(Permission, blank=True, related_name="skills")
    needs_no_permission = models.BooleanField(
        default=False, help_text="Confirmed by an owner to read no protected data (so an empty map is intended).")

    class Meta:
        ordering = ["skillset__name", "name"]
        constraints = [models.UniqueConstraint(fields=["skillset", "name"], name="skill_unique_in_skillset")]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return f"{self.skillset.name}/{self.name}"


class Blueprint(models.Model):
    """One version of an agent definition imported from a Security Copilot manifest.

    Its required permissions are fixed once it is complete (every skill mapped): agent identities receive exactly
    these (R3), and partner approvals are bound to their digest (R15).
    """

    name = models.CharField(max_length=200, help_text="The manifest's Descriptor.Name.")
    version = models.PositiveIntegerField()
    display_name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT, related_name="blueprints")
    publisher_kind = models.CharField(max_length=20, choices=PublisherKind.choices)
    products = models.JSONField(default=list, blank=True)
    required_skillsets = models.JSONField(default=list, blank=True)
    triggers = models.JSONField(default=list, blank=True)
    inputs = models.JSONField(default=list, blank=True)
    manifest = models.JSONField(help_text="The parsed manifest, as imported.")
    manifest_digest = models.CharField(max_length=64)
    required_permissions = models.ManyToManyField(Permission, blank=True, related_name="blueprints")
    permission_digest = models.CharField(max_length=64, blank=True)
    is_complete = models.BooleanField(default=False)
    executor_url = models.URLField(
        max_length=500, blank=True,
        help_text="An external agent's executor (AgentDefinitions[].ExecutorUrl): runs are POSTed to it.")
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    imported_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "-version"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="blueprint_unique_version")]

    def __str__(self) -> str:
        return f"{self.display_name} v{self.version}"

    @property
    def kind(self) -> str:
        """Scheduled triggers (a poll period above zero) make an autonomous agent; on-demand ones an assistive one."""
        scheduled = any((t.get("DefaultPollPeriodSeconds") or 0) > 0 for t in self.triggers or [])
        return AgentKind.AUTONOMOUS if scheduled else AgentKind.ASSISTIVE


class BlueprintSkill(models.Model):
    """A skill a blueprint's manifest names; ``skill`` is empty while the catalog does not know it."""

    blueprint = models.ForeignKey(Blueprint, on_delete=models.CASCADE, related_name="skill_refs")
    name = models.CharField(max_length=200)
    skill = models.ForeignKey(Skill, null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["blueprint", "name"], name="blueprint_skill_unique")]

    def __str__(self) -> str:
        return self.name


class Agent(models.Model):
    """An agent set up in a workspace from a blueprint version (R1, R7, R8, R10)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="agents")
    blueprint = models.ForeignKey(Blueprint, on_delete=models.PROTECT, related_name="agents")
    name = models.CharField(max_length=150)
    scope = models.CharField(max_length=20, choices=AgentScope.choices)
    kind = models.CharField(max_length=20, choices=AgentKind.choices, default=AgentKind.ASSISTIVE)
    identity_type = models.CharField(max_length=20, choices=IdentityType.choices)
    run_as_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="run_as_agents")
    status = models.CharField(max_length=20, choices=AgentStatus.choices, default=AgentStatus.DRAFT, db_index=True)
    disabled_by = models.CharField(max_length=20, choices=DisabledBy.choices, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    orphaned_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    risk_level = models.CharField(max_length=10, default="none")
    schedule_period_seconds = models.PositiveIntegerField(
        default=0, help_text="From the blueprint's triggers (DefaultPollPeriodSeconds); 0 runs on demand only.")
    schedule_paused = models.BooleanField(default=False)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                       help_text="When the schedule next starts a run (empty: not scheduled).")

    class Meta:
        ordering = ["name"]
        permissions = [("own_agent", "Owns the agent"), ("sponsor_agent", "Sponsors the agent")]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="agent_unique_name_in_workspace"),
            models.CheckConstraint(
                condition=(Q(identity_type=IdentityType.USER_ACCOUNT, run_as_user__isnull=False)
                           | Q(identity_type=IdentityType.AGENT_IDENTITY, run_as_user__isnull=True)),
                name="agent_run_as_user_iff_user_account",
            ),
            models.CheckConstraint(condition=Q(expires_at__isnull=True) | Q(expires_at__gt=models.F("created_at")),
                                   name="agent_expires_after_creation"),
        ]
        indexes = [models.Index(fields=["workspace", "status", "name"]), models.Index(fields=["workspace", "scope"])]

    def __str__(self) -> str:
        return self.name

    def is_expired(self, now=None) -> bool:
        """R8: past ``expires_at`` the agent counts as inactive even before the expiry job runs."""
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())

    @property
    def stop_reason(self) -> str:
        """Why an agent whose status says active may not act now ("" when it may)."""
        if self.status != AgentStatus.ACTIVE:
            return f"the agent is {self.get_status_display().lower()}"
        if self.is_expired():
            return "the agent has expired"
        if self.identity_type == IdentityType.USER_ACCOUNT and not self.run_as_user.is_active:
            return f"its user account {self.run_as_user.username} is disabled"  # R1
        return ""

    @property
    def is_operational(self) -> bool:
        return not self.stop_reason


class AgentUserObjectPermission(UserObjectPermissionBase):
    """Per-agent ownership and sponsorship (guardian, direct foreign key)."""

    content_object = models.ForeignKey(Agent, on_delete=models.CASCADE)


class AgentGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Agent, on_delete=models.CASCADE)


class AgentIdentity(models.Model):
    """The dedicated identity of an ``agent_identity`` agent (R3): a client id, credentials, fixed permissions."""

    agent = models.OneToOneField(Agent, on_delete=models.PROTECT, related_name="identity")
    client_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "agent identities"

    def __str__(self) -> str:
        return f"{self.agent.name} ({self.client_id})"


class GrantQuerySet(models.QuerySet):
    """R3: automatic grants cannot be changed or removed through the ORM; only retirement ends them."""

    def update(self, **kwargs):
        raise PermissionError("Permissions assigned from the blueprint cannot be changed.")

    def delete(self):
        raise PermissionError("Permissions assigned from the blueprint cannot be removed.")

    def _end_for_retirement(self, when) -> int:
        """Only ``registry.agent_retire`` calls this: retirement is the one way an automatic grant ends."""
        return models.QuerySet.update(self.filter(ended_at__isnull=True), ended_at=when)


class PermissionGrant(models.Model):
    """A permission an agent identity holds, with its source. Automatic grants are immutable (R3)."""

    identity = models.ForeignKey(AgentIdentity, on_delete=models.PROTECT, related_name="grants")
    permission = models.ForeignKey(Permission, on_delete=models.PROTECT, related_name="+")
    source = models.CharField(max_length=20, choices=GrantSource.choices, default=GrantSource.BLUEPRINT)
    granted_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    objects = GrantQuerySet.as_manager()

    class Meta:
        ordering = ["permission__name"]
        constraints = [models.UniqueConstraint(fields=["identity", "permission", "source"], name="grant_unique")]

    def __str__(self) -> str:
        return f"{self.permission.name} → {self.identity.agent.name}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Permissions assigned from the blueprint cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Permissions assigned from the blueprint cannot be removed.")


class AgentUser(models.Model):
    """The agent user of an agent identity (R6): 1:1, no usable password, follows its agent's status."""

    identity = models.OneToOneField(AgentIdentity, on_delete=models.PROTECT, related_name="agent_user")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent_user_of")

    def __str__(self) -> str:
        return self.user.username


class Credential(models.Model):
    """A client secret of an agent identity: only its keyed hash is stored; the value is shown once."""

    identity = models.ForeignKey(AgentIdentity, on_delete=models.PROTECT, related_name="credentials")
    secret_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a secret in a vault.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    replaced_by = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")),
                                              name="credential_expires_after_creation")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.identity.agent.name})"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now


class KeyCredential(models.Model):
    """A public key an agent signs its client assertions with (``private_key_jwt``, R28): only public members are
    kept (a PEM is converted to a JWK on the way in), or a ``jwks_uri`` on an allowed host. Keys expire and rotate
    with overlap: adding a key does not end the others (docs/oauth.md, "Agents without secrets")."""

    identity = models.ForeignKey(AgentIdentity, on_delete=models.PROTECT, related_name="key_credentials")
    kid = models.CharField(max_length=64)
    public_jwk = models.JSONField(null=True, blank=True, help_text="The public key as a JWK (public members only).")
    jwks_uri = models.URLField(blank=True, help_text="Where the agent publishes its keys (instead of public_jwk).")
    thumbprint = models.CharField(max_length=43, help_text="RFC 7638 SHA-256 thumbprint (or of the jwks_uri).")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    expires_at = models.DateTimeField(db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["identity", "thumbprint"], name="key_credential_unique_thumbprint"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")),
                                   name="key_credential_expires_after_creation"),
            models.CheckConstraint(condition=Q(public_jwk__isnull=False) | ~Q(jwks_uri=""),
                                   name="key_credential_has_key_or_uri"),
        ]

    def __str__(self) -> str:
        return f"key {self.kid} ({self.identity.agent.name})"

    def is_active(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.expires_at > now


class FederatedCredential(models.Model):
    """A trust rule of workload identity federation (R28): a token from ``issuer`` whose ``sub`` matches
    ``subject`` (exactly, or a ``*`` pattern an administrator allowed) and whose ``aud`` is ``audience``
    authenticates the agent. On a blueprint it is a default trusted for every agent of that blueprint."""

    agent = models.ForeignKey(Agent, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="federated_credentials")
    blueprint = models.ForeignKey(Blueprint, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="federated_credentials")
    name = models.CharField(max_length=120, blank=True)
    issuer = models.URLField(max_length=255, help_text="The token's iss, exactly.")
    subject = models.CharField(max_length=255, help_text="The token's sub, exactly (or a pattern with *).")
    subject_is_pattern = models.BooleanField(default=False)
    audience = models.CharField(max_length=255, help_text="The token's aud must contain this value.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["issuer"], name="federated_credential_issuer")]
        constraints = [
            models.CheckConstraint(condition=Q(agent__isnull=False, blueprint__isnull=True)
                                   | Q(agent__isnull=True, blueprint__isnull=False),
                                   name="federated_credential_agent_xor_blueprint"),
        ]

    def __str__(self) -> str:
        return f"{self.issuer} {self.subject}"

    def is_active(self, now=None) -> bool:
        return self.revoked_at is None


class AttributeValue(models.Model):
    """A custom security attribute on an agent, matched by conditional-access policies later."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="attributes")
    key = models.CharField(max_length=64)
    value = models.CharField(max_length=256)

    class Meta:
        ordering = ["key"]
        constraints = [models.UniqueConstraint(fields=["agent", "key"], name="attribute_unique_key")]
        indexes = [models.Index(fields=["key", "value"])]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


class AttributeSet(models.Model):
    """A named group of custom security attribute keys (R20, "Protected attributes").

    The attributes of a protected set are assigned, changed and removed only by Global Administrators and
    Attribute Assignment Administrators (``portal.rbac.can_assign_protected_attributes``); a key in no set, or in
    a set that is not protected, is free for the agent's owners. Sets are never deleted: a key leaves a set instead.
    """

    name = models.CharField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    protected = models.BooleanField(default=True, help_text="Only Global and Attribute Assignment Administrators "
                                                              "assign the attributes of a protected set.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AttributeDefinition(models.Model):
    """An attribute key's place in a set: a key belongs to at most one set (the unique key holds it)."""

    key = models.CharField(max_length=64, unique=True)
    attribute_set = models.ForeignKey(AttributeSet, on_delete=models.CASCADE, related_name="definitions")

    class Meta:
        ordering = ["key"]

    def __str__(self) -> str:
        return f"{self.key} ({self.attribute_set.name})"


class BulkJob(models.Model):
    """A bulk provisioning upload (R9): validated in the request, run by a Celery worker with progress.

    The uploaded file holds no secrets. The new client secrets are kept only encrypted (``secrets_ciphertext``)
    with a key that lives in the requester's session, until they download them once; then they are erased.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="bulk_jobs")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    filename = models.CharField(max_length=255)
    file_format = models.CharField(max_length=10)
    payload = models.TextField(help_text="The uploaded file (names, sponsors, owners; no secrets).")
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    secrets_ciphertext = models.BinaryField(null=True, blank=True)
    secrets_downloaded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"bulk job #{self.pk} ({self.filename})"

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0




class Sponsorship(models.Model):
    """A person named sponsor of an agent and their answer (R30; docs/sponsorship.md).

    Naming someone creates a pending row; the named person accepts or declines. An accepted sponsorship is
    confirmed again before ``due_at`` or lapses (expired). A transfer is a pending row that ``replaces`` another;
    the replaced one ends (superseded) when the new sponsor accepts. An agent counts as sponsored only while one
    accepted, not overdue sponsorship of an active person exists; the guardian ``sponsor_agent`` permission
    keeps meaning "named sponsor" (pending, accepted or lapsed)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="sponsorships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sponsorships")
    state = models.CharField(max_length=12, choices=SponsorshipState.choices, default=SponsorshipState.PENDING)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)
    attested_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True, db_index=True,
                                  help_text="When an accepted sponsorship must be confirmed again.")
    reminded_at = models.DateTimeField(null=True, blank=True,
                                       help_text="When the sponsor was reminded of the current due date.")
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                 help_text="The sponsorship a transfer takes over once this one is accepted.")
    escalated_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When the owners were told a transfer was not accepted in time.")

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "user"], condition=Q(state__in=SPONSORSHIP_CURRENT),
                                    name="sponsorship_one_current_per_person"),
            models.CheckConstraint(condition=~Q(state=SponsorshipState.ACCEPTED) | Q(due_at__isnull=False),
                                   name="sponsorship_accepted_has_due_date"),
        ]
        indexes = [models.Index(fields=["agent", "state"]), models.Index(fields=["user", "state"]),
                   models.Index(fields=["state", "requested_at"])]

    def __str__(self) -> str:
        return f"{self.user} sponsors {self.agent} ({self.state})"
