"""R23: the events of the old hash chain move into the Merkle log with their proof: the migration verifies the chain
first and records its head; afterwards the chain still verifies up to that head and the tree covers its events."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from portal import audit_log
from portal.models import AuditEvent, AuditLeaf, AuditLogState

BEFORE = ("portal", "0009_workspace_forbid_new_secrets")
AFTER = ("portal", "0010_audit_merkle_log")
CHAIN_FIELDS = ("created_at", "actor_name", "actor_kind", "action", "target_type", "target_id", "target_label",
                "workspace_id", "before", "after", "request_id", "prev_hash")


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _migrate(target) -> object:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return MigrationExecutor(connection).loader.project_state([target]).apps


def _old_chain(apps, n: int, break_at: int | None = None) -> list[int]:
    """Events as the old ``record()`` wrote them: each hash-chained to the one before, the head row updated."""
    from portal.audit import GENESIS_HASH, compute_hash

    OldEvent, ChainHead = apps.get_model("portal", "AuditEvent"), apps.get_model("portal", "AuditChainHead")
    prev, ids = GENESIS_HASH, []
    for i in range(n):
        fields = {"created_at": timezone.now(), "actor_name": "system", "actor_kind": "system",
                  "action": "legacy.change", "target_type": "", "target_id": "", "target_label": f"old {i}",
                  "workspace_id": None, "before": {"n": i}, "after": {"n": i + 1}, "request_id": "",
                  "prev_hash": prev}
        digest = compute_hash(fields)
        if i == break_at:
            fields["target_label"] = "edited before the migration"
        ids.append(OldEvent.objects.create(hash=digest, **fields).pk)
        prev = digest
    ChainHead.objects.update_or_create(pk=1, defaults={"last_event_id": ids[-1], "last_hash": prev})
    return ids


@pytest.fixture
def before_the_log(postgres):
    apps = _migrate(BEFORE)
    try:
        yield apps
    finally:
        _migrate_to_latest()


@pytest.mark.django_db(transaction=True)
def test_r23_the_old_chains_events_keep_their_proof(before_the_log):
    ids = _old_chain(before_the_log, 12)
    _migrate(AFTER)
    _migrate_to_latest()  # the later migrations (the leaf table) keep what 0010 recorded
    state = AuditLogState.objects.get(pk=1)
    assert (state.legacy_chain_events, state.legacy_chain_last_event_id) == (12, ids[-1])
    assert state.legacy_chain_head_hash == AuditEvent.objects.get(pk=ids[-1]).hash
    # the first sequencer run integrates them, oldest first, their chain hashes inside each leaf
    assert audit_log.sequence().integrated == 12
    assert list(AuditLeaf.objects.order_by("leaf_index").values_list("event_id", flat=True)) == ids
    check = audit_log.verify_log()
    assert check.ok and check.legacy_events_checked == 12 and check.events_checked == 12
    # both proofs hold: editing an old event breaks its old chain link and its leaf
    victim = ids[4]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET target_label = 'x' WHERE id = %s", [victim])
    messages = audit_log.verify_log().messages
    assert any(f"Event #{victim}: its content does not match its old chain hash" in m for m in messages), messages
    assert any(f"Event #{victim} (leaf 4) was changed" in m for m in messages), messages


@pytest.mark.django_db(transaction=True)
def test_r23_a_broken_old_chain_stops_the_migration_naming_the_event(before_the_log):
    ids = _old_chain(before_the_log, 6, break_at=3)
    with pytest.raises(RuntimeError, match=f"event #{ids[3]} does not fit the chain"):
        _migrate(AFTER)
    # nothing migrated: the table has no leaf columns yet
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, "portal_auditevent")}
    assert "leaf_index" not in columns
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM portal_auditevent")
        cursor.execute("DELETE FROM portal_auditchainhead")
