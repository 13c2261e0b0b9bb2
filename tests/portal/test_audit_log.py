"""R23: the audit log — writes that never wait for each other, a sequencer that integrates committed events into an
RFC 9162 Merkle tree exactly once, signed tree heads, ``verify_audit_log`` and the offline export check."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from io import StringIO
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from portal import audit, audit_log, jobs, merkle
from portal.models import AuditEvent, AuditLeaf, AuditLogState, AuditTreeHead, JobRun, User, Workspace
from portal.schedules import JOB_SCHEDULES
from tests.factories import UserFactory, make_workspace

TABLE = AuditEvent._meta.db_table
LEAF_TABLE = AuditLeaf._meta.db_table


def _sql(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _events(n: int, label: str = "row") -> list[AuditEvent]:
    with transaction.atomic():
        return audit.record_many(actor=None, changes=[
            audit.Change(action="test.event", target_label=f"{label} {i}", after={"i": i}) for i in range(n)])


def _leaf_indexes() -> list[int]:
    return list(AuditLeaf.objects.order_by("leaf_index").values_list("leaf_index", flat=True))


def _verify_fails_with(fragment: str) -> audit_log.LogCheck:
    check = audit_log.verify_log()
    assert not check.ok and fragment in check.first_problem, check.messages
    return check


class HeldTransaction:
    """A transaction on another connection (a thread) kept open: ``hold(work)`` runs ``work`` in it and returns
    what it returned once it has run; the transaction commits at ``release()``."""

    def __init__(self):
        self._ready, self._release = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._value = None

    def hold(self, work):
        def run():
            try:
                with transaction.atomic():
                    self._value = work()
                    self._ready.set()
                    self._release.wait(timeout=30)
            finally:
                connection.close()

        self._thread = threading.Thread(target=run)
        self._thread.start()
        assert self._ready.wait(timeout=20)
        return self._value

    def release(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


@pytest.fixture
def held_transaction():
    """A ``HeldTransaction``; released at the end of the test whatever happens (a failed test leaves no open
    transaction holding locks behind)."""
    held = HeldTransaction()
    yield held
    held.release()


def _late_event() -> int:
    """An audited change still being written: its event's id is taken, its transaction not committed."""
    return audit.record(actor=None, action="test.late").pk


# --- the write path -----------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_r23_no_shared_lock_in_the_write_path_two_transactions_commit_without_waiting(postgres):
    """Two audited changes on two connections: the second commits while the first is still open (with the old
    chain head lock it waited for the first, here it would hit its lock timeout)."""
    first_user, second_user = UserFactory(username="first"), UserFactory(username="second")
    first_written, second_done = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def first():
        try:
            with transaction.atomic():
                first_user.display_name = "First, changed"
                first_user.save(update_fields=["display_name"])
                audit.record(actor=first_user, action="test.first", target=first_user, after={"n": 1})
                first_written.set()
                outcome["first_saw_second_commit"] = second_done.wait(timeout=20)
            outcome["first"] = "committed"
        except Exception as error:  # reported in the main thread
            outcome["first"] = repr(error)
        finally:
            connection.close()

    def second():
        try:
            assert first_written.wait(timeout=20)
            started = time.perf_counter()
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '3s'")
                second_user.display_name = "Second, changed"
                second_user.save(update_fields=["display_name"])
                audit.record(actor=second_user, action="test.second", target=second_user, after={"n": 2})
            outcome["second_seconds"] = time.perf_counter() - started
            outcome["second"] = "committed"
        except Exception as error:
            outcome["second"] = repr(error)
        finally:
            second_done.set()
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcome["first"] == outcome["second"] == "committed", outcome
    assert outcome["first_saw_second_commit"] is True  # the second committed while the first was still open
    assert outcome["second_seconds"] < 2.0, outcome
    assert set(AuditEvent.objects.filter(action__startswith="test.").values_list("action", flat=True)) == {
        "test.first", "test.second"}
    # nothing shared was touched: both events wait for the sequencer
    assert not AuditLogState.objects.filter(size__gt=0).exists() and not AuditTreeHead.objects.exists()
    assert not AuditLeaf.objects.exists()


@pytest.mark.django_db
def test_r23_a_rolled_back_change_leaves_no_event_and_no_leaf():
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit.record(actor=None, action="test.rolled_back")
        raise RuntimeError("crash before commit")
    assert AuditEvent.objects.count() == before
    audit_log.sequence()
    assert audit_log.verify_log().ok and not AuditEvent.objects.filter(action="test.rolled_back").exists()


# --- the sequencer ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_r23_the_sequencer_places_every_event_once_and_signs_a_head_per_batch():
    _events(25)
    total = AuditEvent.objects.count()
    result = audit_log.sequence(batch_size=10)
    assert result.integrated == total and result.tree_size == total
    assert _leaf_indexes() == list(range(total))
    heads = list(AuditTreeHead.objects.order_by("size").values_list("size", flat=True))
    assert heads[-1] == total and len(heads) == -(-total // 10)
    ids_in_leaf_order = list(AuditLeaf.objects.order_by("leaf_index").values_list("event_id", flat=True))
    assert ids_in_leaf_order == sorted(ids_in_leaf_order)  # deterministic: oldest id first
    assert audit_log.sequence().integrated == 0  # nothing twice
    head = audit_log.latest_head()
    leaves = [bytes(h) for h in AuditLeaf.objects.order_by("leaf_index").values_list("leaf_hash", flat=True)]
    assert merkle.Tree(leaves).root().hex() == head.root_hash
    assert merkle.verify_tree_head_signature(audit_log.public_key_raw(), head.size, bytes.fromhex(head.root_hash),
                                             head.timestamp_ms, base64.b64decode(head.signature))
    assert audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_an_event_committed_after_later_ids_were_sequenced_still_gets_its_place(postgres, held_transaction):
    """Commit order is not id order: an event with a lower id that commits late is integrated, not skipped."""
    late_id = held_transaction.hold(_late_event)
    later = _events(3, "later")
    assert min(e.pk for e in later) > late_id
    audit_log.sequence()
    assert AuditEvent.objects.filter(pk__in=[e.pk for e in later], leaf__isnull=True).count() == 0
    held_transaction.release()
    late = AuditEvent.objects.get(pk=late_id)
    assert late.leaf_index is None and late.pending_sequencing
    audit_log.sequence()
    late = AuditEvent.objects.get(pk=late_id)
    assert late.leaf_index == AuditEvent.objects.count() - 1
    assert _leaf_indexes() == list(range(AuditEvent.objects.count()))
    assert audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_two_sequencers_at_once_integrate_every_event_exactly_once(postgres):
    for _ in range(4):
        _events(500)
    total = AuditEvent.objects.count()
    barrier = threading.Barrier(2)
    results: list[object] = []

    def run():
        try:
            barrier.wait(timeout=20)
            results.append(audit_log.sequence(batch_size=150))
        except Exception as error:
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert all(isinstance(r, audit_log.SequenceResult) for r in results), results
    rest = audit_log.sequence(batch_size=150)  # whatever a sequencer that found the log busy left
    assert sum(r.integrated for r in results) + rest.integrated == total
    assert _leaf_indexes() == list(range(total))
    assert AuditLogState.objects.get(pk=1).size == total == audit_log.latest_head().size
    assert audit_log.verify_log().ok


def _test_database_url() -> str:
    db = connection.settings_dict
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


KILLED_SEQUENCER = """
import os, signal
import django
django.setup()
from portal import audit_log
signed = []
real_sign = audit_log._sign_head
def sign_then_die_on_the_third_batch(size, root):
    signed.append(size)
    if len(signed) == 3:  # the third batch has updated its events, not yet committed: killed right here
        os.kill(os.getpid(), signal.SIGKILL)
    return real_sign(size, root)
audit_log._sign_head = sign_then_die_on_the_third_batch
audit_log.sequence(batch_size=100)
"""


@pytest.mark.django_db(transaction=True)
def test_r23_a_sequencer_killed_part_way_loses_nothing_and_the_next_run_integrates_each_event_once(postgres):
    _events(450)
    total = AuditEvent.objects.count()
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "SECRET_KEY": settings.SECRET_KEY,
           "DJANGO_SETTINGS_MODULE": "portal.settings"}
    killed = subprocess.run([sys.executable, "-c", KILLED_SEQUENCER], env=env, cwd=settings.BASE_DIR,
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr[-2000:]
    # two whole batches committed; the third died with its transaction
    assert AuditLogState.objects.get(pk=1).size == 200 == audit_log.latest_head().size
    assert _leaf_indexes() == list(range(200))
    assert AuditEvent.objects.filter(leaf__isnull=True).count() == total - 200
    result = audit_log.sequence(batch_size=100)
    assert result.integrated == total - 200
    assert _leaf_indexes() == list(range(total))
    assert audit_log.verify_log().ok


def test_r23_the_sequencer_is_a_scheduled_job_recording_a_jobrun(db):
    assert "sequence_audit_log" in JOB_SCHEDULES and "sequence_audit_log" in jobs.REGISTRY
    _events(3)
    call_command("run_governance_jobs", "--job", "sequence_audit_log", stdout=StringIO())
    run = JobRun.objects.get(job="sequence_audit_log")
    assert run.status == "succeeded" and run.counts["integrated"] == AuditEvent.objects.count()
    assert AuditEvent.objects.filter(leaf__isnull=True).count() == 0


# --- verify_audit_log ---------------------------------------------------------------------------------------


@pytest.fixture
def sequenced_log(db):
    _events(40)
    audit_log.sequence(batch_size=10)
    assert audit_log.verify_log().ok
    return list(AuditEvent.objects.select_related("leaf").order_by("leaf__leaf_index"))


def test_r23_verify_audit_log_passes_on_an_untouched_log(sequenced_log):
    out = StringIO()
    call_command("verify_audit_log", stdout=out)
    assert f"Audit trail intact: {len(sequenced_log)} events verified." in out.getvalue()
    assert "4 signed tree heads" in out.getvalue()


def test_r23_verify_audit_log_names_a_changed_event(sequenced_log):
    victim = sequenced_log[7]
    _sql(f"UPDATE {TABLE} SET target_label = %s WHERE id = %s", ["forged", victim.pk])
    _verify_fails_with(f"Event #{victim.pk} (leaf 7) was changed")
    with pytest.raises(CommandError, match=f"#{victim.pk}"):
        call_command("verify_audit_log", stdout=StringIO())


def test_r23_verify_audit_log_names_a_changed_event_whose_leaf_hash_was_rewritten(sequenced_log):
    """A forger who recomputes the leaf hash still cannot match the signed tree head covering it."""
    victim = sequenced_log[12]
    row = list(AuditEvent.objects.filter(pk=victim.pk).values_list(*audit_log.LEAF_COLUMNS).get())
    row[7] = "forged"  # target_label
    _sql(f"UPDATE {TABLE} SET target_label = %s WHERE id = %s", ["forged", victim.pk])
    _sql(f"UPDATE {LEAF_TABLE} SET leaf_hash = %s WHERE event_id = %s", [audit_log.leaf_of(tuple(row)), victim.pk])
    check = _verify_fails_with("does not match the events: an event in leaves 10–19")
    assert f"#{sequenced_log[10].pk}–#{sequenced_log[19].pk}" in check.first_problem


def test_r23_verify_audit_log_names_a_deleted_event(sequenced_log):
    victim = sequenced_log[5]
    _sql(f"DELETE FROM {TABLE} WHERE id = %s", [victim.pk])
    _verify_fails_with(f"Leaf 5 is missing: the event there was deleted (after event #{sequenced_log[4].pk} "
                       f"and before event #{sequenced_log[6].pk})")


def test_r23_verify_audit_log_finds_the_newest_events_deleted(sequenced_log):
    _sql(f"DELETE FROM {TABLE} WHERE id = %s", [sequenced_log[-1].pk])
    _verify_fails_with(f"the newest events (leaf {len(sequenced_log) - 1}) were deleted")


def test_r23_verify_audit_log_names_an_inserted_event(sequenced_log):
    size = len(sequenced_log)
    with transaction.atomic():
        forged = audit.record(actor=None, action="test.forged", target_label="inserted by hand")
    row = AuditEvent.objects.filter(pk=forged.pk).values_list(*audit_log.LEAF_COLUMNS).get()
    _sql(f"INSERT INTO {LEAF_TABLE} (leaf_index, event_id, leaf_hash) VALUES (%s, %s, %s)",
         [size, forged.pk, audit_log.leaf_of(row)])
    _verify_fails_with(f"Event #{forged.pk} (leaf {size}) is not covered by any signed tree head: it was inserted")


def test_r23_verify_audit_log_finds_a_forged_tree_head(sequenced_log):
    head = AuditTreeHead.objects.order_by("size")[1]
    _sql(f"UPDATE {AuditTreeHead._meta.db_table} SET root_hash = %s WHERE id = %s", ["ab" * 32, head.pk])
    _verify_fails_with(f"Tree head #{head.pk} ({head.size} events")
    assert "signature does not verify" in audit_log.verify_log().first_problem


def test_r23_verify_audit_log_refuses_a_tree_head_signed_by_another_key(sequenced_log):
    """A head that matches the events but is signed by someone else's key is forged all the same."""
    head = audit_log.latest_head()
    other = Ed25519PrivateKey.generate()
    raw = other.public_key().public_bytes_raw()
    signature = other.sign(merkle.tree_head_message(head.size, bytes.fromhex(head.root_hash), head.timestamp_ms))
    _sql(f"UPDATE {AuditTreeHead._meta.db_table} SET signature = %s, key_id = %s WHERE id = %s",
         [base64.b64encode(signature).decode(), merkle.key_id(raw), head.pk])
    _verify_fails_with(f"Tree head #{head.pk} ({head.size} events")
    assert "which is not a trusted audit log key: it was forged" in audit_log.verify_log().first_problem


def test_r23_the_verify_job_integrates_then_checks_and_fails_naming_the_event(sequenced_log):
    run = jobs.job_execute("verify_audit_chain")
    assert run.status == "succeeded" and run.counts["events_checked"] == len(sequenced_log)
    victim = sequenced_log[3]
    _sql(f"UPDATE {TABLE} SET action = 'x' WHERE id = %s", [victim.pk])
    run = jobs.job_execute("verify_audit_chain")
    assert run.status == "failed" and f"#{victim.pk}" in run.error


# --- the export with proofs, verified offline ---------------------------------------------------------------


def _export_with_proofs(client, user, query: str = "") -> str:
    client.force_login(user)
    response = client.get(f"/audit/export/?format=json&proofs=1{query}")
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment;")
    return b"".join(response.streaming_content).decode()


def test_r23_an_export_with_proofs_verifies_offline_without_the_database(client, world, tmp_path,
                                                                          django_db_blocker):
    text = _export_with_proofs(client, world.ga, "&action=workspace.")
    document = json.loads(text)
    assert document["events"] and {e["event"]["action"][:10] for e in document["events"]} == {"workspace."}
    assert document["tree_head"]["size"] == AuditEvent.objects.count()  # pending events were integrated first
    path = tmp_path / "audit.json"
    path.write_text(text, encoding="utf-8")
    out = StringIO()
    with django_db_blocker.block():  # any database access would raise here
        call_command("verify_audit_export", str(path), stdout=out)
        call_command("verify_audit_export", str(path), "--key-id", document["public_key"]["key_id"], stdout=out)
        with pytest.raises(CommandError, match="not one you trust"):
            call_command("verify_audit_export", str(path), "--key-id", "ffffffffffffffff", stdout=out)
    assert f"Export verified: {len(document['events'])} events" in out.getvalue()


def test_r23_an_export_fails_to_verify_after_any_byte_of_an_event_is_changed(client, world):
    text = _export_with_proofs(client, world.ga, "&action=directory.")
    assert merkle.verify_export(text).ok
    lines = text.split("\n")
    line_no = next(i for i, line in enumerate(lines) if '"event":' in line)
    line = lines[line_no]
    start = line.index('"event":') + len('"event":')
    end = line.rindex("}", start, line.index(',"inclusion_proof"')) + 1
    assert json.loads(line[start:end])["action"].startswith("directory.")
    for position in range(start, end):
        replacement = "b" if line[position] != "b" else "c"
        changed = "\n".join([*lines[:line_no], line[:position] + replacement + line[position + 1:],
                             *lines[line_no + 1:]])
        assert not merkle.verify_export(changed).ok, (position, line[position])


def test_r23_an_export_with_a_changed_tree_head_or_key_fails(client, world):
    text = _export_with_proofs(client, world.ga)
    document = json.loads(text)
    forged = json.loads(text)
    forged["tree_head"]["size"] += 1
    assert "signature does not verify" in merkle.verify_export(merkle.render_export(forged)).first_problem
    other = Ed25519PrivateKey.generate()
    head = document["tree_head"]
    raw = other.public_key().public_bytes_raw()
    document["public_key"] = {"algorithm": "Ed25519", "key_id": merkle.key_id(raw), "raw_base64": merkle.b64(raw)}
    head["signature"] = merkle.b64(other.sign(merkle.tree_head_message(
        head["size"], bytes.fromhex(head["root_hash"]), head["timestamp_ms"])))
    resigned = merkle.render_export(document)
    assert merkle.verify_export(resigned).ok  # self-consistent, so pin the published key:
    assert not merkle.verify_export(resigned, trusted_key_ids=[merkle.key_id(audit_log.public_key_raw())]).ok


def test_r23_pending_events_are_left_out_of_a_proof_export_and_counted(world):
    audit_log.sequence()
    _events(4, "pending")
    text = "".join(audit_log.export_with_proofs(AuditEvent.objects.all(), {}))
    document = json.loads(text)
    assert document["pending_left_out"] == 4
    assert len(document["events"]) == AuditEvent.objects.count() - 4 == document["tree_head"]["size"]
    assert merkle.verify_export(text).ok


def test_r23_the_log_key_is_published_for_auditors(client, db):
    response = client.get("/audit/log-key/")
    assert response.status_code == 200
    body = response.json()
    assert body["algorithm"] == "Ed25519" and base64.b64decode(body["raw_base64"]) == audit_log.public_key_raw()
    assert body["key_id"] == merkle.key_id(audit_log.public_key_raw()) and "BEGIN PUBLIC KEY" in body["pem"]


# --- the leaf table: insert-only sequencing (docs/design.md, R23) -------------------------------------------


def test_r23_the_sequencers_leaf_bytes_are_exactly_the_canonical_leaf_data(db):
    """The sequencer writes each leaf's JSON directly (its hot path); it must be byte for byte what
    ``merkle.leaf_data`` gives, which the offline verifier recomputes, whatever the event holds."""
    workspace_id = UserFactory().pk  # any integer will do for the id column
    with transaction.atomic():
        audit.record_many(actor=None, changes=[
            audit.Change(action="test.ünïcode", target_label='quote " back\\slash \n newline — ✓ 😀',
                         before={"z": 1, "a": [1.5, None, True, {"y": "é", "b": ""}]}, after=None),
            audit.Change(action="test.empty", before=None, after={}),
            audit.Change(action="test.text", after="just text", before=[1, 2]),
        ])
    _sql(f"UPDATE {TABLE} SET workspace_id = NULL, target_id = %s, prev_hash = %s WHERE action = 'test.empty'",
         ["42", "ab" * 32])
    rows = list(AuditEvent.objects.filter(action__startswith="test.").values_list(*audit_log.LEAF_COLUMNS))
    assert len(rows) == 3 and workspace_id
    for row in rows:
        assert audit_log._leaf_bytes(row) == merkle.leaf_data(audit_log.event_fields(row)), row
        assert audit_log.leaf_of(row) == merkle.leaf_hash(merkle.leaf_data(audit_log.event_fields(row)))
    if connection.vendor == "postgresql":  # the rows as the sequencer reads them (created_at as text)
        fast = {row[0]: row for row in audit_log._pending_rows(0, 10_000)}
        for row in rows:
            assert audit_log._leaf_bytes(fast[row[0]]) == merkle.leaf_data(audit_log.event_fields(row))
    audit_log.sequence()
    assert audit_log.verify_log().ok


def _forbid_event_updates() -> None:
    """A trigger that makes any UPDATE of an audit event row fail (removed with the test's transaction)."""
    if connection.vendor == "postgresql":
        _sql("CREATE FUNCTION pg_temp.audit_event_no_update() RETURNS trigger LANGUAGE plpgsql AS "
             "$$ BEGIN RAISE EXCEPTION 'an audit event row was updated'; END $$", [])
        _sql(f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE} FOR EACH ROW "
             "EXECUTE FUNCTION pg_temp.audit_event_no_update()", [])
    else:
        _sql(f"CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON {TABLE} "
             "BEGIN SELECT RAISE(ABORT, 'an audit event row was updated'); END", [])


def test_r23_the_sequencer_never_updates_an_event_row(db):
    _events(30)
    _forbid_event_updates()
    with pytest.raises(Exception, match="an audit event row was updated"), transaction.atomic():
        _sql(f"UPDATE {TABLE} SET target_label = 'x' WHERE id = %s", [AuditEvent.objects.first().pk])  # armed
    total = AuditEvent.objects.count()
    result = audit_log.sequence(batch_size=7)
    assert result.integrated == total and _leaf_indexes() == list(range(total))
    assert list(AuditLeaf.objects.order_by("leaf_index").values_list("event_id", flat=True)) == sorted(
        AuditEvent.objects.values_list("id", flat=True))
    assert all(len(bytes(h)) == 32 for h in AuditLeaf.objects.values_list("leaf_hash", flat=True))
    assert audit_log.verify_log().ok


def test_r23_the_leaf_table_places_an_event_once_and_a_stale_batch_changes_nothing(db):
    """Two sequencers that read the same state (as SQLite, with no row locks, allows): the second batch fails
    whole, on the leaf table's unique keys, and the log stays as the first left it."""
    _events(12)
    stale = AuditLogState.objects.get_or_create(pk=1)[0]
    twin = AuditLogState.objects.get(pk=1)
    with transaction.atomic():
        placed, _last = audit_log._integrate_batch(stale, 100, 0)
    assert placed == AuditEvent.objects.count()
    heads = AuditTreeHead.objects.count()
    newer = _events(4, "newer")
    with pytest.raises(audit_log.SequencerConflict), transaction.atomic():
        audit_log._integrate_batch(twin, 100, 0)  # from the old state: the same leaf indexes again
    assert _leaf_indexes() == list(range(placed)) and AuditTreeHead.objects.count() == heads
    assert all(event.pending_sequencing for event in AuditEvent.objects.filter(pk__in=[e.pk for e in newer]))
    assert AuditLogState.objects.get(pk=1).size == placed
    event = AuditEvent.objects.order_by("id").first()
    with pytest.raises(Exception), transaction.atomic():  # noqa: B017 - the database's unique error
        AuditLeaf.objects.create(leaf_index=placed, event_id=event.pk, leaf_hash=b"\0" * 32)
    assert audit_log.sequence().integrated == len(newer) and audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_the_pending_search_skips_what_is_settled_but_never_an_event_still_being_written(postgres,
                                                                                           held_transaction):
    """``scanned_through`` moves up only once no open transaction can still hold a lower id, so a slow writer's
    event is found, and events below it are not searched again."""
    _events(5, "settled")
    audit_log.sequence()  # takes the newest id as the candidate
    audit_log.sequence()  # no transaction was open then: the candidate is settled
    state = AuditLogState.objects.get(pk=1)
    assert state.scanned_through == AuditEvent.objects.order_by("-id").first().pk

    late_id = held_transaction.hold(_late_event)
    later = _events(3, "later")
    for _ in range(3):
        audit_log.sequence()
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in later], leaf__isnull=True).exists()
    assert AuditLogState.objects.get(pk=1).scanned_through < late_id  # held back by the open writer
    held_transaction.release()
    assert audit_log.pending_count() == 1
    audit_log.sequence()
    assert AuditEvent.objects.get(pk=late_id).leaf_index == AuditEvent.objects.count() - 1
    audit_log.sequence()
    assert AuditLogState.objects.get(pk=1).scanned_through == AuditEvent.objects.order_by("-id").first().pk
    assert audit_log.pending_count() == 0 and audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_an_audited_change_does_not_wait_for_a_lock_held_on_its_actor_or_workspace(postgres, held_transaction):
    """A long transaction holding the actor's or the workspace's row (as an owner change locks workspaces) does not
    hold up an audited change by that person in that workspace: the event's links take no lock on those rows."""
    actor = UserFactory(username="busy-actor")
    workspace = make_workspace("busy", owners=[actor, UserFactory(username="second-owner")])
    held_transaction.hold(lambda: (list(Workspace.objects.select_for_update().filter(pk=workspace.pk)),
                                   list(User.objects.select_for_update().filter(pk=actor.pk))))
    started = time.perf_counter()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
        event = audit.record(actor=actor, action="test.while_locked", workspace=workspace, after={"n": 1})
    assert time.perf_counter() - started < 1.5
    held_transaction.release()
    assert AuditEvent.objects.get(pk=event.pk).workspace_id == workspace.pk
    audit_log.sequence()
    assert audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_verify_audit_log_names_an_event_whose_leaf_row_was_deleted(postgres):
    """Deleting a leaf row does not make its event "pending" again unnoticed: the gap is named, and so is the
    event, which the sequencer does not place a second time."""
    _events(20)
    audit_log.sequence()
    audit_log.sequence()  # scanned_through moves past them (no transaction was open)
    assert AuditLogState.objects.get(pk=1).scanned_through == AuditEvent.objects.order_by("-id").first().pk
    victim = AuditLeaf.objects.get(leaf_index=6)
    _sql(f"DELETE FROM {LEAF_TABLE} WHERE leaf_index = 6", [])
    assert audit_log.sequence().integrated == 0
    messages = audit_log.verify_log().messages
    assert any("Leaf 6 is missing" in m for m in messages), messages
    assert any(f"Event #{victim.event_id} has lost its place in the log" in m for m in messages), messages
