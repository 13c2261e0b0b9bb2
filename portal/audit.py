"""The audit trail (R23): append-only events written inside each service's transaction, with no shared lock.

``record()``/``record_many()`` are the only way an event is written: one plain insert in the caller's transaction,
touching no row any other writer touches, so audited changes never wait for each other and a rolled-back change
leaves no event behind. After commit, the sequencer (``portal.audit_log``) integrates the event into the log's
Merkle tree and signs a new tree head; ``portal.audit_log.verify_log()`` recomputes the tree and checks every head.

Events written before the Merkle log are also hash-chained (``prev_hash``/``hash``); ``compute_hash`` and
``verify_legacy_chain`` keep checking that chain, whose verified head was recorded when the log replaced it.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.utils import timezone

from portal import bulkrows
from portal.choices import ActorKind, UserKind
from portal.models import AuditEvent, AuditLogState, User, Workspace

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"
_SECRET_KEY_RE = re.compile(r"(secret|password|token|credential_value|private_key|api_key)", re.IGNORECASE)
#: exact types (not subclasses such as a model's choices) that ``scrub`` keeps as they are
_PLAIN_JSON = frozenset({str, int, float, bool, type(None)})

#: Set by ``RequestIdMiddleware`` (and by Celery tasks) so every event carries the request that caused it.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("audit_request_id", default="")

HASHED_FIELDS = (
    "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id", "target_label",
    "workspace_id", "before", "after", "request_id", "prev_hash",
)


def scrub(value: Any) -> Any:
    """Remove secrets from before/after snapshots and normalise them to plain JSON types."""
    if type(value) in _PLAIN_JSON:  # already plain: the JSON round trip below would give it back unchanged
        return value
    if isinstance(value, dict):
        return {
            str(k): (REDACTED if _SECRET_KEY_RE.search(str(k)) else scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def compute_hash(fields: dict[str, Any]) -> str:
    """The old hash chain's link: SHA-256 over a canonical JSON rendering of ``HASHED_FIELDS`` (events written
    before the Merkle log)."""
    canonical = {name: fields[name] for name in HASHED_FIELDS}
    created_at = canonical["created_at"]
    canonical["created_at"] = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    canonical["target_id"] = str(canonical["target_id"] or "")
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def actor_kind_of(actor: User | None) -> str:
    if actor is None:
        return ActorKind.SYSTEM
    return ActorKind.AGENT_USER if actor.kind == UserKind.AGENT_USER else ActorKind.HUMAN


@dataclass(frozen=True)
class Change:
    """One event to write; ``record_many`` writes a batch of them in one insert."""

    action: str
    target: models.Model | None = None
    workspace: Workspace | None = None
    before: dict | None = None
    after: dict | None = None
    target_label: str = ""


#: the columns ``record_many`` writes, in the order of ``_event_row``
EVENT_COLUMNS = ("created_at", "actor_id", "actor_name", "actor_kind", "action", "target_type", "target_id",
                 "target_label", "workspace_id", "before", "after", "request_id")


def _event_row(change: Change, actor_id: int | None, actor_name: str, actor_kind: str, now, request_id: str) -> tuple:
    target = change.target
    return (now, actor_id, actor_name, actor_kind, change.action,
            target._meta.label_lower if target is not None else "",
            str(target.pk) if target is not None else "",
            (change.target_label or (str(target) if target is not None else ""))[:200],
            change.workspace.pk if change.workspace is not None else None,
            scrub(change.before) if change.before is not None else None,
            scrub(change.after) if change.after is not None else None,
            request_id)


def record_many(*, actor: User | None, changes: Iterable[Change], actor_kind: str | None = None,
                actor_name: str | None = None, instances: bool = True) -> list[AuditEvent]:
    """Write events for a batch of changes by one actor, in the caller's transaction (R23). No shared row is read
    or locked: the events wait, "pending sequencing", until the sequencer gives them their place in the log.

    Returns the events; with ``instances=False`` the same rows are written without a model instance each and
    nothing is returned (thousands of events written by one service; docs/design.md, "Bulk inserts without model
    instances")."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record() must run inside the transaction of the change it records.")
    now = timezone.now()
    who = (actor.pk if actor is not None else None, actor_name or (actor.username if actor else "system"),
           actor_kind or actor_kind_of(actor))
    rows = [_event_row(change, *who, now, current_request_id.get()) for change in changes]
    if not rows:
        return []
    if not instances:
        bulkrows.insert_rows(AuditEvent, EVENT_COLUMNS, rows)
        return []
    return AuditEvent.objects.bulk_create([  # created_at, then the actor as an object (its cache kept), then the rest
        AuditEvent(created_at=row[0], actor=actor, **dict(zip(EVENT_COLUMNS[2:], row[2:], strict=True)))
        for row in rows], batch_size=2000)


def record(*, actor: User | None, action: str, target: models.Model | None = None,
           workspace: Workspace | None = None, before: dict | None = None, after: dict | None = None,
           target_label: str = "", actor_kind: str | None = None) -> AuditEvent:
    """Write one event describing a state change, inside the caller's transaction (R23)."""
    change = Change(action=action, target=target, workspace=workspace, before=before, after=after,
                    target_label=target_label)
    return record_many(actor=actor, changes=[change], actor_kind=actor_kind)[0]


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    broken_event_id: int | None = None
    reason: str = ""


def verify_legacy_chain(chunk_size: int = 5000) -> ChainCheck:
    """Recompute the old hash chain over the events written before the Merkle log (those with a ``hash``), in id
    order, and check it ends at the head verified when the log replaced it; the first event that does not fit is
    named."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = 0
    columns = ("id", "hash", *HASHED_FIELDS)
    rows = AuditEvent.objects.exclude(hash="").order_by("id").values_list(*columns).iterator(chunk_size=chunk_size)
    for row in rows:
        event_id, stored_hash, *values = row
        fields = dict(zip(HASHED_FIELDS, values, strict=True))
        if fields["prev_hash"] != expected_prev:
            return ChainCheck(False, checked, event_id, "its link to the previous event of the old hash chain is "
                                                         "broken (an event before it was removed or changed)")
        if compute_hash(fields) != stored_hash:
            return ChainCheck(False, checked, event_id, "its content does not match its old chain hash (it was "
                                                         "edited)")
        expected_prev = stored_hash
        last_id = event_id
        checked += 1
    state = AuditLogState.objects.filter(pk=1).first()
    recorded = (state.legacy_chain_head_hash or GENESIS_HASH, state.legacy_chain_last_event_id) if state else None
    if recorded is not None and recorded != (expected_prev, last_id):
        return ChainCheck(False, checked, state.legacy_chain_last_event_id or None,
                          "the old hash chain no longer ends at the head verified when the Merkle log replaced it "
                          "(its newest events were removed, or events were added to it)")
    return ChainCheck(True, checked)


EXPORT_COLUMNS = ("id", "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id",
                  "target_label", "workspace__slug", "before", "after", "request_id", "leaf_index", "leaf_hash")
#: where each export column is read from (the leaf's place and hash live in ``AuditLeaf``)
_EXPORT_SOURCES = tuple(f"leaf__{c}" if c in ("leaf_index", "leaf_hash") else c for c in EXPORT_COLUMNS)


def export_rows(queryset, chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Stream the filtered events as dicts without loading the whole set (server-side cursor on PostgreSQL)."""
    for row in queryset.order_by("id").values_list(*_EXPORT_SOURCES).iterator(chunk_size=chunk_size):
        item = dict(zip(EXPORT_COLUMNS, row, strict=True))
        item["workspace"] = item.pop("workspace__slug")
        item["created_at"] = item["created_at"].isoformat()
        item["leaf_hash"] = bytes(item["leaf_hash"]).hex() if item["leaf_hash"] is not None else ""
        yield item
