"""The audit log's sequencer, signed tree heads, verification and export with proofs (docs/design.md, R23).

Writers (``portal.audit.record``) only insert events. ``sequence()`` runs after commit — the
``sequence_audit_log`` job every minute, and before a verification or an export with proofs — and integrates the
committed events still pending, oldest id first, in batches of ``AUDIT_SEQUENCE_BATCH``: each batch, in one
transaction, gives every event its leaf index and RFC 9162 leaf hash, extends the tree's compact range kept in
``AuditLogState`` and writes a new signed ``AuditTreeHead``. A batch is one read of the pending rows' leaf columns,
the hashes computed here, and one multi-row insert into the insert-only ``AuditLeaf`` table: no event row is ever
updated. The state row is locked with ``SKIP LOCKED`` by the sequencer alone (never by a writer), so two sequencers
never integrate the same event (the leaf table's unique keys back this up), and a sequencer killed part-way loses
its whole batch, which the next run integrates. Pending events are those with no leaf, never chosen by "ids above
the last one sequenced": an event whose transaction commits after a later id was sequenced still gets its place.
The search starts above ``scanned_through``, an id moved up only once every transaction that could still hold a
lower id has ended (``_advance_scanned_through``), so it stays short however long the log grows.

Tree heads are signed with the portal's own Ed25519 key (``AUDIT_LOG_SIGNING_KEY``, or derived from
``SECRET_KEY``); its public key is published at ``/audit/log-key/`` so auditors can check heads and exports.
"""

from __future__ import annotations

import base64
import hashlib
import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from portal import audit, merkle
from portal.models import AuditEvent, AuditLeaf, AuditLogState, AuditTreeHead

#: The columns an event's leaf is made of (``merkle.EVENT_FIELDS``, with the workspace as its id).
LEAF_COLUMNS = ("id", "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id",
                "target_label", "workspace_id", "before", "after", "request_id", "prev_hash", "hash")


def event_fields(row: tuple) -> dict[str, Any]:
    """One event as its leaf's fields, from a ``LEAF_COLUMNS`` row read from the database."""
    event = dict(zip(merkle.EVENT_FIELDS, row, strict=True))
    event["created_at"] = event["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
    event["target_id"] = str(event["target_id"] or "")
    return event


_string = json.encoder.encode_basestring  # the encoder ``merkle.canonical_json`` uses for text (non-ASCII as is)


def _json_value(value: Any) -> str:
    return "null" if value is None else merkle.canonical_json(value)


def _text(value: str | None) -> str:
    return _string(value) if value is not None else "null"


def _leaf_bytes(row: tuple) -> bytes:
    """``merkle.leaf_data(event_fields(row))`` written out directly, keys already in sorted order: the
    sequencer's hot path (a test checks both give the same bytes)."""
    (event_id, created_at, actor_name, actor_kind, action, target_type, target_id, target_label, workspace_id,
     before, after, request_id, prev_hash, chain_hash) = row
    if not isinstance(created_at, str):
        created_at = created_at.astimezone(UTC).isoformat(timespec="microseconds")
    return (f'{{"action":{_text(action)},"actor_kind":{_text(actor_kind)},"actor_name":{_text(actor_name)},'
            f'"after":{_json_value(after)},"before":{_json_value(before)},'
            f'"created_at":"{created_at}","hash":{_text(chain_hash)},'
            f'"id":{int(event_id)},"prev_hash":{_text(prev_hash)},"request_id":{_text(request_id)},'
            f'"target_id":{_string(str(target_id or ""))},"target_label":{_text(target_label)},'
            f'"target_type":{_text(target_type)},'
            f'"workspace_id":{"null" if workspace_id is None else int(workspace_id)}}}').encode()


def leaf_of(row: tuple) -> bytes:
    """The event's RFC 9162 leaf hash (the same bytes as ``merkle.leaf_data(event_fields(row))``, built directly)."""
    return hashlib.sha256(b"\x00" + _leaf_bytes(row)).digest()


# --- the signing key ----------------------------------------------------------------------------------------

_KEYS: dict[tuple[str, str], Ed25519PrivateKey] = {}


def signing_key() -> Ed25519PrivateKey:
    """``AUDIT_LOG_SIGNING_KEY`` (base64 of a 32-byte seed), or a key derived from ``SECRET_KEY`` with HKDF."""
    configured, secret = settings.AUDIT_LOG_SIGNING_KEY, settings.SECRET_KEY
    key = _KEYS.get((configured, secret))
    if key is None:
        if configured:
            seed = base64.b64decode(configured, validate=True)
        else:
            seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                        info=b"portal audit log tree heads").derive(secret.encode())
        key = _KEYS[(configured, secret)] = Ed25519PrivateKey.from_private_bytes(seed)
    return key


def public_key_raw() -> bytes:
    return signing_key().public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_pem() -> str:
    return signing_key().public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def trusted_keys() -> dict[str, bytes]:
    """The keys whose tree heads verify: today's, and earlier ones listed in ``AUDIT_LOG_TRUSTED_KEYS``."""
    keys = {merkle.key_id(raw): raw for raw in (base64.b64decode(k) for k in settings.AUDIT_LOG_TRUSTED_KEYS)}
    current = public_key_raw()
    keys[merkle.key_id(current)] = current
    return keys


def _sign_head(size: int, root: bytes) -> AuditTreeHead:
    timestamp_ms = int(timezone.now().timestamp() * 1000)
    signature = signing_key().sign(merkle.tree_head_message(size, root, timestamp_ms))
    return AuditTreeHead(size=size, root_hash=root.hex(), timestamp_ms=timestamp_ms,
                         signature=base64.b64encode(signature).decode(), key_id=merkle.key_id(public_key_raw()))


def tree_head_json(head: AuditTreeHead) -> dict[str, Any]:
    return {"size": head.size, "root_hash": head.root_hash, "timestamp_ms": head.timestamp_ms,
            "signature": head.signature, "key_id": head.key_id}


def head_time(head: AuditTreeHead) -> datetime:
    return datetime.fromtimestamp(head.timestamp_ms / 1000, tz=UTC)


# --- the sequencer ------------------------------------------------------------------------------------------


@dataclass
class SequenceResult:
    integrated: int = 0
    batches: int = 0
    tree_size: int = 0
    busy: bool = False


class SequencerConflict(RuntimeError):
    """The log moved under this batch (another sequencer, or a hand-made change): the batch is rolled back."""


def sequence(*, batch_size: int | None = None, max_batches: int | None = None) -> SequenceResult:
    """Integrate every committed event still pending sequencing, in batches (one transaction and one signed tree
    head each). Returns at once with ``busy`` when another sequencer holds the log."""
    batch_size = batch_size or settings.AUDIT_SEQUENCE_BATCH
    result = SequenceResult()
    after: int | None = None  # the last id this run looked at: each batch reads on from there
    drained = False
    while max_batches is None or result.batches < max_batches:
        with transaction.atomic():
            state = AuditLogState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
            if state is None:
                if AuditLogState.objects.filter(pk=1).exists():
                    result.busy = True
                    return result
                AuditLogState.objects.get_or_create(pk=1)
                continue
            if after is None:
                after = state.scanned_through
            integrated, after = _integrate_batch(state, batch_size, after)
            result.tree_size = state.size
        result.integrated += integrated
        if not integrated:
            drained = True
            break
        result.batches += 1
        if integrated < batch_size:
            drained = True
            break
    if drained and connection.vendor == "postgresql":
        _advance_scanned_through()
    return result


_CREATED_AT_TEXT = "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"


def _pending_rows(after: int, limit: int) -> list[tuple]:
    """Up to ``limit`` committed events with no leaf and an id above ``after``, oldest first, as ``LEAF_COLUMNS``
    rows (one plain query reading only those columns; JSON decoded as the ORM would)."""
    if connection.vendor != "postgresql":
        return list(AuditEvent.objects.filter(id__gt=after, leaf__isnull=True).order_by("id")
                    .values_list(*LEAF_COLUMNS)[:limit])
    # created_at comes as the text the leaf holds (what ``isoformat`` gives in UTC): no datetime parsing
    columns = ", ".join(_CREATED_AT_TEXT if name == "created_at" else f"e.{AuditEvent._meta.get_field(name).column}"
                        for name in LEAF_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {AuditEvent._meta.db_table} e WHERE e.id > %s AND NOT EXISTS "
            f"(SELECT 1 FROM {AuditLeaf._meta.db_table} l WHERE l.event_id = e.id) ORDER BY e.id LIMIT %s",
            [after, limit])
        rows = cursor.fetchall()
    before, after_ = LEAF_COLUMNS.index("before"), LEAF_COLUMNS.index("after")
    loads = json.loads
    for position, row in enumerate(rows):
        if row[before] is not None or row[after_] is not None:
            row = list(row)
            row[before] = loads(row[before]) if row[before] is not None else None
            row[after_] = loads(row[after_]) if row[after_] is not None else None
            rows[position] = row
    return rows


def _integrate_batch(state: AuditLogState, batch_size: int, after: int) -> tuple[int, int]:
    """Place the next pending events: one read, one multi-row insert of their leaves, the state and a signed
    head. No event row is written. Returns how many were placed and the last id read."""
    rows = _pending_rows(after, batch_size)
    if not rows:
        return 0, after
    frontier = merkle.Frontier(state.size, [bytes.fromhex(h) for h in state.frontier])
    first = frontier.size
    append, sha256 = frontier.append, hashlib.sha256
    ids, hashes = [], []
    for row in rows:
        leaf = sha256(b"\x00" + _leaf_bytes(row)).digest()
        ids.append(row[0])
        hashes.append(leaf)
        append(leaf)
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    # three plain parameters (ids as text, the hashes end to end): cheap to send
                    cursor.execute(
                        f"INSERT INTO {AuditLeaf._meta.db_table} (leaf_index, event_id, leaf_hash) "
                        "SELECT %s::bigint + g.i - 1, g.id, substring(%s::bytea FROM (g.i::int - 1) * 32 + 1 FOR 32) "
                        "FROM unnest(string_to_array(%s, ',')::bigint[]) WITH ORDINALITY AS g(id, i)",
                        [first, b"".join(hashes), ",".join(map(str, ids))])
            else:
                AuditLeaf.objects.bulk_create([AuditLeaf(leaf_index=first + i, event_id=event_id, leaf_hash=leaf)
                                               for i, (event_id, leaf) in enumerate(zip(ids, hashes, strict=True))])
    except IntegrityError as error:
        raise SequencerConflict(f"Leaves of this batch were placed by someone else: {error}") from error
    # Compare-and-set on the size: a second sequencer that read the same state (SQLite has no row locks) fails here.
    moved = AuditLogState.objects.filter(pk=1, size=state.size).update(
        size=frontier.size, frontier=[h.hex() for h in frontier.hashes])
    if moved != 1:
        raise SequencerConflict("The audit log's state changed during this batch.")
    _sign_head(frontier.size, frontier.root()).save()
    state.size, state.frontier = frontier.size, [h.hex() for h in frontier.hashes]
    return len(rows), ids[-1]


def _advance_scanned_through() -> None:
    """Move ``scanned_through`` up once it is safe (PostgreSQL): an event id is handed out inside the transaction
    that inserts the event, so when every transaction open at ``candidate_at`` has ended, each id up to
    ``candidate_id`` (the newest id then) is committed or gone for good. If none of them is pending any more,
    later runs need not look below it. Then the newest id becomes the next candidate."""
    with transaction.atomic():
        state = AuditLogState.objects.select_for_update(skip_locked=True).filter(pk=1).first()
        if state is None:
            return
        with connection.cursor() as cursor:
            if state.candidate_at is not None and state.candidate_id <= state.scanned_through:
                state.candidate_at = None
            if state.candidate_at is not None:
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # read the sessions as they are now
                cursor.execute(
                    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                    "AND (xact_start <= %s OR (xact_start IS NULL AND state IS NULL))) "  # hidden: assume open
                    "AND NOT EXISTS (SELECT 1 FROM pg_prepared_xacts WHERE database = current_database())",
                    [state.candidate_at])
                if cursor.fetchone()[0]:
                    cursor.execute(
                        f"SELECT EXISTS (SELECT 1 FROM {AuditEvent._meta.db_table} e WHERE e.id > %s AND e.id <= %s "
                        f"AND NOT EXISTS (SELECT 1 FROM {AuditLeaf._meta.db_table} l WHERE l.event_id = e.id))",
                        [state.scanned_through, state.candidate_id])
                    if not cursor.fetchone()[0]:
                        state.scanned_through = state.candidate_id
                        state.candidate_at = None
            if state.candidate_at is None:
                cursor.execute(f"SELECT (SELECT max(id) FROM {AuditEvent._meta.db_table}), clock_timestamp()")
                newest, now = cursor.fetchone()
                if newest is not None and newest > state.scanned_through:
                    state.candidate_id, state.candidate_at = newest, now
        AuditLogState.objects.filter(pk=1).update(scanned_through=state.scanned_through,
                                                 candidate_id=state.candidate_id, candidate_at=state.candidate_at)


def pending_count() -> int:
    """Events committed but not yet in the tree (only the ids above ``scanned_through`` can be)."""
    scanned = Coalesce(Subquery(AuditLogState.objects.filter(pk=1).values("scanned_through")[:1]), Value(0))
    return AuditEvent.objects.filter(id__gt=scanned, leaf__isnull=True).count()  # one query


def latest_head() -> AuditTreeHead | None:
    return AuditTreeHead.objects.order_by("-size").first()


# --- verification -------------------------------------------------------------------------------------------


@dataclass
class LogCheck:
    """What ``verify_log`` found: problems in log order (the first names the first changed, deleted or inserted
    event, or the first forged tree head)."""

    events_checked: int = 0
    legacy_events_checked: int = 0
    heads_checked: int = 0
    pending: int = 0
    problems: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def messages(self) -> list[str]:
        return [message for _position, message in sorted(self.problems, key=lambda p: p[0])]

    @property
    def first_problem(self) -> str:
        return self.messages[0] if self.problems else ""


def _range_text(first: int, last: int) -> str:
    return f"{first}" if first == last else f"{first}–{last}"


def _stored_or(stored: bytes, computed: bytes) -> bytes:
    return stored if len(stored) == 32 else computed


def _leaves_with_events(chunk_size: int) -> Iterator[tuple]:
    """Every leaf in index order with its event's ``LEAF_COLUMNS`` (a leaf whose event is gone is left out by the
    join: its index shows as missing). On PostgreSQL one server-side cursor, read as the sequencer reads."""
    if connection.vendor != "postgresql":
        yield from (AuditLeaf.objects.order_by("leaf_index")
                    .values_list("leaf_index", "leaf_hash", *(f"event__{name}" for name in LEAF_COLUMNS))
                    .iterator(chunk_size=chunk_size))
        return
    columns = ", ".join(_CREATED_AT_TEXT if name == "created_at" else f"e.{AuditEvent._meta.get_field(name).column}"
                        for name in LEAF_COLUMNS)
    before, after = 2 + LEAF_COLUMNS.index("before"), 2 + LEAF_COLUMNS.index("after")
    loads = json.loads
    cursor = connection.chunked_cursor()
    try:
        cursor.execute(f"SELECT l.leaf_index, l.leaf_hash, {columns} FROM {AuditLeaf._meta.db_table} l "
                       f"JOIN {AuditEvent._meta.db_table} e ON e.id = l.event_id ORDER BY l.leaf_index")
        while chunk := cursor.fetchmany(chunk_size):
            for row in chunk:
                if row[before] is not None or row[after] is not None:
                    row = list(row)
                    row[before] = loads(row[before]) if row[before] is not None else None
                    row[after] = loads(row[after]) if row[after] is not None else None
                yield row
    finally:
        cursor.close()


def verify_log(chunk_size: int = 5000) -> LogCheck:
    """Recompute the Merkle tree from the events and check every stored tree head (R23).

    Checks: the old hash chain of the events written before the log; leaf indices run 0, 1, 2… with no gap (a
    gap is a deleted event); each event still hashes to its leaf hash (else it was changed); every tree head is
    signed by a trusted key and its root is the recomputed tree's root at its size; consecutive heads are
    consistent (an RFC 9162 consistency proof from the recomputed tree verifies against both signed roots); no
    leaf lies beyond the newest head (the sequencer signs a head in the same transaction as it places events, so
    such a leaf was inserted by hand)."""
    check = LogCheck()
    legacy = audit.verify_legacy_chain(chunk_size)
    check.legacy_events_checked = legacy.checked
    if not legacy.ok:
        check.problems.append((-1, f"Event #{legacy.broken_event_id}: {legacy.reason}."))

    leaves, ids = bytearray(), array("q")
    complete = True  # False once a leaf is missing: the tree cannot be recomputed past it
    rows = _leaves_with_events(chunk_size)
    expected = 0
    for leaf_index, stored, *row in rows:
        stored = bytes(stored)
        event_id = row[0]
        if leaf_index != expected:
            after = f"after event #{ids[-1]} " if ids else "at the start "
            check.problems.append((expected, f"Leaf {_range_text(expected, leaf_index - 1)} is missing: the event "
                                             f"there was deleted ({after}and before event #{event_id})."))
            complete = False
            expected = leaf_index
        computed = leaf_of(row)
        if computed != stored:
            check.problems.append((leaf_index, f"Event #{event_id} (leaf {leaf_index}) was changed: its content "
                                               "no longer matches its leaf hash."))
        # The tree is rebuilt from the stored leaf hashes (a content change is named above), so a leaf hash
        # rewritten to fit a forged event is caught by the signed tree heads below.
        leaves += _stored_or(stored, computed)
        ids.append(event_id)
        expected += 1
        check.events_checked += 1
    tree_size = expected

    tree = merkle.Tree(leaves) if complete else None
    keys = trusted_keys()
    previous: AuditTreeHead | None = None
    previous_ok = mismatched = False
    for head in AuditTreeHead.objects.order_by("size").iterator(chunk_size=chunk_size):
        check.heads_checked += 1
        label = f"Tree head #{head.pk} ({head.size} events, signed {head_time(head):%Y-%m-%d %H:%M:%S} UTC)"
        position = previous.size if previous else 0  # before what a forged head would make look wrong
        ok = True
        key = keys.get(head.key_id)
        try:
            root = bytes.fromhex(head.root_hash)
            signature = base64.b64decode(head.signature, validate=True)
        except ValueError:
            root, signature = b"", b""
        if key is None:
            check.problems.append((position, f"{label} is signed by key {head.key_id}, which is not a trusted audit "
                                             "log key: it was forged."))
            ok = False
        elif not merkle.verify_tree_head_signature(key, head.size, root, head.timestamp_ms, signature):
            check.problems.append((position, f"{label}: its signature does not verify: it was forged or altered."))
            ok = False
        if not ok:  # a forged head says nothing about the events
            continue
        if head.size > tree_size:
            first = tree_size
            check.problems.append((first, f"{label} covers {head.size} events but the log holds {tree_size}: the "
                                          f"newest events (leaf {_range_text(first, head.size - 1)}) were deleted."))
            ok = False
        elif tree is not None and tree.root(head.size) != root:
            start = previous.size if previous else 0
            if ok and not mismatched:
                mismatched = True  # every later head differs too: the first one locates the change
                check.problems.append((start, f"{label} does not match the events: an event in leaves "
                                              f"{_range_text(start, head.size - 1)} (events #{ids[start]}–"
                                              f"#{ids[head.size - 1]}) was changed, inserted or removed."))
            ok = False
        if ok and previous_ok and tree is not None:
            proof = tree.consistency_proof(previous.size, head.size)
            if not merkle.verify_consistency(previous.size, head.size, bytes.fromhex(previous.root_hash), root,
                                             proof):
                check.problems.append((position, f"{label} is not consistent with the tree head before it."))
                ok = False
        previous, previous_ok = head, ok
    covered = previous.size if previous else 0
    if tree_size > covered:
        check.problems.append((covered, f"Event #{ids[covered]} (leaf {covered}) is not covered by any signed tree "
                                        "head: it was inserted outside the sequencer."))
    state = AuditLogState.objects.filter(pk=1).first()
    if state is not None and state.size != covered:
        check.problems.append((min(state.size, covered), f"The sequencer's state says the tree holds {state.size} "
                                                          f"events; the newest signed tree head says {covered}."))
    if state is not None and state.scanned_through:
        # below scanned_through every event was placed: one without a leaf lost it (its leaf row was deleted)
        unplaced = (AuditEvent.objects.filter(id__lte=state.scanned_through, leaf__isnull=True).order_by("id")
                    .values_list("id", flat=True)[:1])
        for event_id in unplaced:
            check.problems.append((tree_size, f"Event #{event_id} has lost its place in the log: its leaf was "
                                              "deleted."))
    check.pending = pending_count()
    return check


# --- the export with inclusion proofs -----------------------------------------------------------------------


def export_with_proofs(events, filters: dict[str, str], chunk_size: int = 2000) -> Iterator[str]:
    """The filtered events that the newest tree head covers, each with its inclusion proof, then the head and the
    public key: a document ``portal.merkle.verify_export`` (``manage.py verify_audit_export``) checks offline.
    Events still pending sequencing cannot be proven yet: they are left out and counted in the header."""
    head = latest_head()
    size = head.size if head else 0
    leaves = bytearray()
    for (leaf_hash,) in (AuditLeaf.objects.filter(leaf_index__lt=size).order_by("leaf_index")
                         .values_list("leaf_hash").iterator(chunk_size=20_000)):
        leaves += leaf_hash
    tree = merkle.Tree(leaves)
    covered = events.filter(leaf__leaf_index__lt=size)
    pending = events.count() - covered.count()
    head_json = tree_head_json(head) if head else {"size": 0, "root_hash": merkle.EMPTY_ROOT.hex(),
                                                    "timestamp_ms": 0, "signature": "", "key_id": ""}
    yield merkle.export_header(tree_head=head_json, public_key_raw=public_key_raw(), filters=filters,
                               pending_left_out=pending)
    rows = covered.order_by("id").values_list("leaf__leaf_index", *LEAF_COLUMNS).iterator(chunk_size=chunk_size)
    for position, (leaf_index, *row) in enumerate(rows):
        proof = tree.inclusion_proof(leaf_index, size) if tree.size >= size else []
        yield ("," if position else "") + "\n" + merkle.export_entry(event_fields(row), leaf_index, proof)
    yield "\n]}\n"


def key_document() -> dict[str, Any]:
    """What ``/audit/log-key/`` publishes: the public key (raw and PEM), its id, and the trusted earlier keys."""
    raw = public_key_raw()
    return {
        "algorithm": "Ed25519",
        "key_id": merkle.key_id(raw),
        "raw_base64": merkle.b64(raw),
        "pem": public_key_pem(),
        "fingerprint_sha256": hashlib.sha256(raw).hexdigest(),
        "trusted_earlier_keys": [{"key_id": key, "raw_base64": merkle.b64(value)}
                                 for key, value in trusted_keys().items() if key != merkle.key_id(raw)],
        "tree_head_message": f"{merkle.TREE_HEAD_CONTEXT}\\n<size>\\n<root hash, hex>\\n<timestamp, ms>\\n",
    }
