"""Directory, permission catalog, workspaces, audit trail and job records (the portal layer: docs/design.md, Layers).

State changes never happen here: they live in the service modules (``directory``, ``workspaces``, ``audit``,
``jobs``). Models hold the data and the invariants that fit in a row.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser, Group, UserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone

from portal.choices import (
    ActorKind,
    ChangeState,
    JobStatus,
    JobTrigger,
    PermissionKind,
    Product,
    UserKind,
    WorkspaceRole,
)


class PortalUserManager(UserManager):
    def humans(self):
        return self.filter(kind=UserKind.HUMAN)


class User(AbstractUser):
    """A workforce user or an agent user (R6). Agent users never sign in interactively."""

    display_name = models.CharField(max_length=150, blank=True)
    oauth_subject = models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                                     help_text="The stable, opaque `sub` of this person's tokens (never the username).")
    manager = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reports"
    )
    kind = models.CharField(max_length=20, choices=UserKind.choices, default=UserKind.HUMAN, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = PortalUserManager()

    class Meta:
        ordering = ["username"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.display_name or self.get_full_name() or self.username

    @property
    def is_agent_user(self) -> bool:
        return self.kind == UserKind.AGENT_USER


class Permission(models.Model):
    """A data right from the catalog, e.g. ``Policy.Read.All`` (application or delegated).

    Directory roles grant them to people; blueprints require them for agents. ``privileged`` ones can never
    reach an agent (R4).
    """

    name = models.CharField(max_length=150)
    kind = models.CharField(max_length=20, choices=PermissionKind.choices)
    product = models.CharField(max_length=20, choices=Product.choices, db_index=True)
    description = models.CharField(max_length=300, blank=True)
    privileged = models.BooleanField(default=False)

    class Meta:
        ordering = ["product", "name", "kind"]
        constraints = [models.UniqueConstraint(fields=["name", "kind"], name="permission_unique_name_kind")]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display().lower()})"


class DirectoryRole(models.Model):
    """A directory role such as Global Administrator; carries the data rights its holders get."""

    key = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=300, blank=True)
    privileged = models.BooleanField(default=False, help_text="Privileged roles can never be held by an agent.")
    permissions = models.ManyToManyField(Permission, blank=True, related_name="roles")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DirectoryRoleAssignment(models.Model):
    """A user holds a directory role. Removing one that makes a workspace's owners fall below two is refused (R12)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="role_assignments")
    role = models.ForeignKey(DirectoryRole, on_delete=models.PROTECT, related_name="assignments")
    assigned_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["role__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["user", "role"], name="role_assignment_unique")]

    def __str__(self) -> str:
        return f"{self.user} — {self.role}"


class Workspace(models.Model):
    """The scope of platform roles (R10). Workspaces are archived, never deleted, so audit rows keep their scope."""

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=300, blank=True)
    owner_group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="+")
    contributor_group = models.OneToOneField(Group, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    forbid_new_secrets = models.BooleanField(
        default=False, help_text="No new client secret for this workspace's agents: they authenticate with a key or "
                                 "a federated credential (R28; docs/design.md, Credential types in governance).")

    class Meta:
        ordering = ["name"]
        default_permissions = ("view", "change")
        permissions = [
            ("manage_members", "Add, remove and change members"),
            ("setup_agents", "Set up agents at workspace scope"),
            ("run_agents", "Run agents, create sessions and use outputs"),
            ("publish_user_scope", "Build, test and publish at user scope"),
            ("publish_workspace_scope", "Build, test and publish at workspace scope"),
        ]

    def __str__(self) -> str:
        return self.name


class WorkspaceMembership(models.Model):
    """A user's platform role in a workspace (R10). Platform roles never grant data access (R13)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=WorkspaceRole.choices)
    added_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["workspace", "user"], name="membership_unique")]
        indexes = [models.Index(fields=["workspace", "role"])]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.workspace}"


class AppendOnlyQuerySet(models.QuerySet):
    """Bulk updates and deletes are refused: the audit trail is append-only (R23)."""

    def update(self, **kwargs):
        raise PermissionError("Audit events are append-only.")

    def delete(self):
        raise PermissionError("Audit events are append-only.")

    _raw_delete = delete


class AuditEvent(models.Model):
    """One state change (R23): who did what to which object, before/after. Append-only.

    A service writes its event in its own transaction and touches nothing shared, so audited writes never wait for
    one another. After commit the sequencer (``portal.audit_log``) gives the event its place in the log's Merkle
    tree by inserting its ``AuditLeaf`` (the event row itself is never updated); until then the event is "pending
    sequencing". ``prev_hash``/``hash`` are the links of the hash chain that events written before the Merkle log
    carry (empty for later events); the tree covers them too.
    """

    created_at = models.DateTimeField(db_index=True)
    # The actor and workspace links have no database constraint: its check would take a share lock on the
    # person's or the workspace's row in every audited write, so a change that locks that row (an owner change)
    # would hold up every audited change made by or in it (docs/design.md, R23). The event keeps the names too.
    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                              db_constraint=False)
    actor_name = models.CharField(max_length=150)
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices)
    action = models.CharField(max_length=80, db_index=True)
    target_type = models.CharField(max_length=80, blank=True, db_index=True)
    target_id = models.CharField(max_length=64, blank=True)
    target_label = models.CharField(max_length=200, blank=True)
    # no index of its own: the (workspace, -id) index below serves every lookup by workspace (one index less to
    # write on each audited change)
    workspace = models.ForeignKey(Workspace, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                  db_index=False, db_constraint=False)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True, default="")
    hash = models.CharField(max_length=64, blank=True, default="")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["workspace", "-id"]),
            models.Index(fields=["actor_name"]),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.target_label}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are append-only.")

    def _leaf(self) -> AuditLeaf | None:
        """The event's leaf, or None while pending (no query when read with ``select_related("leaf")``)."""
        try:
            return self.leaf
        except AuditLeaf.DoesNotExist:
            return None

    @property
    def pending_sequencing(self) -> bool:
        return self._leaf() is None

    @property
    def leaf_index(self) -> int | None:
        leaf = self._leaf()
        return leaf.leaf_index if leaf else None

    @property
    def leaf_hash(self) -> str:
        leaf = self._leaf()
        return bytes(leaf.leaf_hash).hex() if leaf else ""

    def field_changes(self) -> list[tuple[str, str, str]]:
        """What changed, for people: (field, old, new) for each field that differs between ``before`` and
        ``after``, values as short text ("" where a side has no such field)."""
        before, after = _as_fields(self.before), _as_fields(self.after)
        keys = list(before) + [key for key in after if key not in before]
        return [(key.replace("_", " "), _shown(before[key]) if key in before else "",
                 _shown(after[key]) if key in after else "")
                for key in keys if key not in before or key not in after or before[key] != after[key]]


def _as_fields(snapshot) -> dict:
    if isinstance(snapshot, dict):
        return snapshot
    return {} if snapshot is None else {"value": snapshot}


def _shown(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value or "empty"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_shown(v)}" for k, v in value.items()) or "none"
    return str(value)


class AuditLeaf(models.Model):
    """An event's place in the audit log's Merkle tree (R23): its leaf index and RFC 9162 leaf hash (32 bytes).

    Insert-only, written by the sequencer alone, a whole batch in one statement: sequencing never updates an event
    row (a new version of a row with many indexes). An event with no leaf is "pending sequencing". The link to the
    event has no database constraint (its check would lock each event row); ``verify_audit_log`` reports a leaf
    whose event is gone as a deleted event."""

    leaf_index = models.BigIntegerField(primary_key=True)
    event = models.OneToOneField(AuditEvent, on_delete=models.DO_NOTHING, related_name="leaf", db_constraint=False)
    leaf_hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"leaf {self.leaf_index} (event #{self.event_id})"


class AuditLogState(models.Model):
    """The sequencer's singleton row (R23): how many events the Merkle tree holds and its compact range (the roots
    of the perfect subtrees covering them), enough to extend it. Only the sequencer locks this row; writers never
    read it. ``legacy_*`` record the hash chain verified when the Merkle log replaced it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.BigIntegerField(default=0)
    frontier = models.JSONField(default=list, blank=True)
    legacy_chain_events = models.BigIntegerField(default=0)
    legacy_chain_last_event_id = models.BigIntegerField(default=0)
    legacy_chain_head_hash = models.CharField(max_length=64, blank=True)
    legacy_chain_verified_at = models.DateTimeField(null=True, blank=True)
    # Every event with an id up to ``scanned_through`` has its leaf (or was rolled back): the sequencer looks for
    # pending events above it only. ``candidate_id``/``candidate_at`` are the next value, taken once every
    # transaction open at ``candidate_at`` has ended (``portal.audit_log``).
    scanned_through = models.BigIntegerField(default=0)
    candidate_id = models.BigIntegerField(default=0)
    candidate_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="audit_log_state_singleton")]

    def __str__(self) -> str:
        return f"audit log of {self.size} events"


class AuditTreeHead(models.Model):
    """A signed tree head (R23): the Merkle tree's size and root at a moment, signed with the portal's audit log
    key (Ed25519 over ``portal.merkle.tree_head_message``). One per sequencer batch; every head is kept."""

    size = models.BigIntegerField(unique=True)
    root_hash = models.CharField(max_length=64)
    timestamp_ms = models.BigIntegerField()
    signature = models.CharField(max_length=128)
    key_id = models.CharField(max_length=16)

    class Meta:
        ordering = ["-size"]
        constraints = [models.CheckConstraint(condition=Q(size__gt=0), name="audit_tree_head_not_empty")]

    def __str__(self) -> str:
        return f"tree head of {self.size} events"


class JobRun(models.Model):
    """One execution of a scheduled governance job (docs/design.md, Scheduled jobs), shown on the Jobs page."""

    job = models.CharField(max_length=60, db_index=True)
    trigger = models.CharField(max_length=20, choices=JobTrigger.choices)
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.RUNNING)
    triggered_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["job", "-started_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(finished_at__gte=models.F("started_at")),
                name="jobrun_finished_after_start",
            )
        ]

    def __str__(self) -> str:
        return f"{self.job} {self.started_at:%Y-%m-%d %H:%M} {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class SchedulerHeartbeat(models.Model):
    """When Celery beat last ticked, as a worker saw it (docs/design.md, Faults): one row per beat, rewritten by
    the ``portal.scheduler_heartbeat`` task beat sends every ``SCHEDULER_HEARTBEAT_SECONDS``.

    Operational telemetry like ``JobRun``, not a governance change, so it carries no audit event. A row that
    stops moving means beat, the broker or every worker is down; the Jobs page and ``/healthz`` say "late".
    """

    name = models.CharField(max_length=60, unique=True, default="beat")
    ticked_at = models.DateTimeField()
    worker = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.name} {self.ticked_at:%Y-%m-%d %H:%M:%S}"


class Notification(models.Model):
    """A message for one person about something that needs their attention (shown in-app and e-mailed).

    Written only by ``portal.notifications.notify`` inside the transaction of the change it reports. It never
    carries a secret: subject and body are plain text a reader may forward, and ``link`` is a relative URL to a
    page that applies its own permission checks. ``read_at`` is personal UI state, not a governance change.
    """

    recipient = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notifications")
    subject = models.CharField(max_length=200)
    body = models.TextField(blank=True)
    link = models.CharField(max_length=300, blank=True, help_text="A path inside the portal, e.g. /agents/12/.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(link="") | (Q(link__startswith="/") & ~Q(link__startswith="//")),
                name="notification_link_is_relative",
            )
        ]

    def __str__(self) -> str:
        return f"{self.subject} → {self.recipient_id}"

    @property
    def is_unread(self) -> bool:
        return self.read_at is None


class ChangeRequest(models.Model):
    """A high-impact change asked for by one administrator (docs/design.md, R31; docs/four-eyes.md).

    ``kind`` names an applier registered by a higher layer (``portal.changes.register``); ``payload`` is what that
    applier needs, in plain JSON, so the change applied on approval is exactly the one that was asked for. Only
    ``portal.changes`` writes these rows: a pending request is approved or rejected by another administrator; a
    break-glass change is applied at once and waits for another administrator's review after the fact.
    """

    kind = models.CharField(max_length=60, db_index=True)
    summary = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=24, choices=ChangeState.choices, default=ChangeState.PENDING, db_index=True)
    requested_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    justification = models.TextField(blank=True)
    break_glass = models.BooleanField(default=False)
    decided_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    outcome = models.CharField(max_length=300, blank=True)
    review_flagged = models.BooleanField(default=False)

    class Meta:
        ordering = ["-requested_at", "-id"]
        indexes = [models.Index(fields=["state", "-requested_at"])]
        constraints = [
            models.CheckConstraint(condition=~Q(break_glass=True) | ~Q(justification=""),
                                   name="change_break_glass_has_justification"),
            models.CheckConstraint(condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                                   name="change_decided_by_another_person"),
        ]

    def __str__(self) -> str:
        return self.summary

    @property
    def is_open(self) -> bool:
        """Waiting for someone: a decision, or a review of an emergency change."""
        return self.state in (ChangeState.PENDING, ChangeState.APPLIED_BREAK_GLASS)


class FourEyesSettings(models.Model):
    """The organisation's four-eyes settings (docs/four-eyes.md), a singleton edited by Global Administrators:
    which kinds of change are high-impact (``high_impact``: kind → on/off; a kind not named takes its registered
    default) and how many agents a bulk retirement may reach before it is high-impact."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    high_impact = models.JSONField(default=dict, blank=True)
    bulk_retire_threshold = models.PositiveIntegerField(default=10)
    updated_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "four-eyes settings"
        constraints = [models.CheckConstraint(condition=Q(id=1), name="four_eyes_settings_singleton")]

    def __str__(self) -> str:
        return "four-eyes settings"
