"""The audit trail (R23): append-only, hash-chained events written inside each service's transaction.

``record()`` is the only way an event is written. It locks the chain head, so concurrent writers append one
after the other and the chain never forks; the lock is released when the caller's transaction commits, and
a rolled-back change leaves no event behind. ``verify_chain()`` recomputes every hash and names the first
event that does not fit.
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

from portal.choices import ActorKind, UserKind
from portal.models import AuditChainHead, AuditEvent, User, Workspace

GENESIS_HASH = "0" * 64
REDACTED = "[redacted]"
_SECRET_KEY_RE = re.compile(r"(secret|password|token|credential_value|private_key|api_key)", re.IGNORECASE)

#: Set by ``RequestIdMiddleware`` (and by Celery tasks) so every event carries the request that caused it.
current_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("audit_request_id", default="")

HASHED_FIELDS = (
    "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id", "target_label",
    "workspace_id", "before", "after", "request_id", "prev_hash",
)


def scrub(value: Any) -> Any:
    """Remove secrets from before/after snapshots and normalise them to plain JSON types."""
    if isinstance(value, dict):
        return {
            str(k): (REDACTED if _SECRET_KEY_RE.search(str(k)) else scrub(v)) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(v) for v in value]
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def compute_hash(fields: dict[str, Any]) -> str:
    """SHA-256 over a canonical JSON rendering of the hashed fields (stable across databases)."""
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
    """One event to append; ``record_many`` writes a batch of them under a single lock."""

    action: str
    target: models.Model | None = None
    workspace: Workspace | None = None
    before: dict | None = None
    after: dict | None = None
    target_label: str = ""


def _lock_head() -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditChainHead.objects.get_or_create(pk=1, defaults={"last_hash": GENESIS_HASH})
        head = AuditChainHead.objects.select_for_update().get(pk=1)
    return head


def record_many(*, actor: User | None, changes: Iterable[Change], actor_kind: str | None = None,
                actor_name: str | None = None) -> list[AuditEvent]:
    """Append events for a batch of changes by one actor, in the caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record() must run inside the transaction of the change it records.")
    head = _lock_head()
    now = timezone.now()
    prev_hash = head.last_hash
    events = []
    for change in changes:
        target = change.target
        fields = {
            "created_at": now,
            "actor_name": actor_name or (actor.username if actor else "system"),
            "actor_kind": actor_kind or actor_kind_of(actor),
            "action": change.action,
            "target_type": target._meta.label_lower if target is not None else "",
            "target_id": str(target.pk) if target is not None else "",
            "target_label": (change.target_label or (str(target) if target is not None else ""))[:200],
            "workspace_id": change.workspace.pk if change.workspace is not None else None,
            "before": scrub(change.before) if change.before is not None else None,
            "after": scrub(change.after) if change.after is not None else None,
            "request_id": current_request_id.get(),
            "prev_hash": prev_hash,
        }
        fields["hash"] = compute_hash(fields)
        prev_hash = fields["hash"]
        events.append(AuditEvent(actor=actor, **fields))
    if not events:
        return []
    created = AuditEvent.objects.bulk_create(events, batch_size=2000)
    if created[-1].pk is None:  # backends that do not return ids from bulk inserts
        created[-1] = AuditEvent.objects.get(hash=created[-1].hash)
    AuditChainHead.objects.filter(pk=1).update(last_event_id=created[-1].pk, last_hash=prev_hash)
    return created


def record(*, actor: User | None, action: str, target: models.Model | None = None,
           workspace: Workspace | None = None, before: dict | None = None, after: dict | None = None,
           target_label: str = "", actor_kind: str | None = None) -> AuditEvent:
    """Append one event describing a state change, inside the caller's transaction (R23)."""
    change = Change(action=action, target=target, workspace=workspace, before=before, after=after,
                    target_label=target_label)
    return record_many(actor=actor, changes=[change], actor_kind=actor_kind)[0]


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    checked: int
    broken_event_id: int | None = None
    reason: str = ""


def verify_chain(chunk_size: int = 5000) -> ChainCheck:
    """Recompute every hash in id order; the first event whose content or link does not fit is named."""
    expected_prev = GENESIS_HASH
    checked = 0
    last_id = None
    columns = ("id", "hash", *[f for f in HASHED_FIELDS])
    rows = AuditEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=chunk_size)
    for row in rows:
        event_id, stored_hash, *values = row
        fields = dict(zip(HASHED_FIELDS, values, strict=True))
        if fields["prev_hash"] != expected_prev:
            return ChainCheck(False, checked, event_id, "its link to the previous event is broken "
                                                         "(an event before it was removed or changed)")
        if compute_hash(fields) != stored_hash:
            return ChainCheck(False, checked, event_id, "its content does not match its hash (it was edited)")
        expected_prev = stored_hash
        last_id = event_id
        checked += 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if head is not None and (head.last_hash != expected_prev or (last_id or 0) != head.last_event_id):
        return ChainCheck(False, checked, head.last_event_id,
                          "the newest events were removed (the chain ends before the recorded head)")
    return ChainCheck(True, checked)


EXPORT_COLUMNS = ("id", "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id",
                  "target_label", "workspace__slug", "before", "after", "request_id", "hash")


def export_rows(queryset, chunk_size: int = 2000) -> Iterator[dict[str, Any]]:
    """Stream the filtered events as dicts without loading the whole set (server-side cursor on PostgreSQL)."""
    for row in queryset.order_by("id").values_list(*EXPORT_COLUMNS).iterator(chunk_size=chunk_size):
        item = dict(zip(EXPORT_COLUMNS, row, strict=True))
        item["workspace"] = item.pop("workspace__slug")
        item["created_at"] = item["created_at"].isoformat()
        yield item
