"""R23: every state change writes one AuditEvent in its transaction; append-only; in a signed Merkle log; exportable.

The sequencer, the tree heads, verification and the export with proofs: tests/portal/test_audit_log.py."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest
from django.contrib.admin.sites import site as admin_site
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test import RequestFactory

from portal import audit, audit_log, directory, workspaces
from portal.models import AuditEvent, WorkspaceMembership

pytestmark = pytest.mark.django_db


def _tamper(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_r23_each_service_change_writes_one_event_with_before_and_after(world):
    before = AuditEvent.objects.count()
    directory.user_update(actor=world.ga, user=world.newcomer, display_name="Nia Newcomer", email="nia@x.test",
                          manager=world.owner)
    assert AuditEvent.objects.count() == before + 1
    event = AuditEvent.objects.latest("id")
    assert (event.actor, event.actor_name, event.actor_kind) == (world.ga, "ga", "human")
    assert event.action == "directory.user_update"
    assert (event.target_type, event.target_id) == ("portal.user", str(world.newcomer.pk))
    assert event.before["display_name"] == "Newcomer" and event.after["display_name"] == "Nia Newcomer"
    assert event.after["manager_id"] == world.owner.pk


def test_r23_a_rolled_back_change_leaves_no_event(world):
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=world.newcomer, role="owner")
        raise RuntimeError("crash after the service, before commit")
    assert AuditEvent.objects.count() == before
    assert not WorkspaceMembership.objects.filter(user=world.newcomer).exists()
    audit_log.sequence()
    assert audit_log.verify_log().ok


@pytest.mark.django_db(transaction=True)
def test_r23_record_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        audit.record(actor=None, action="test.outside")


def test_r23_secrets_never_reach_the_audit_trail(world):
    with transaction.atomic():
        audit.record(actor=world.ga, action="test.secret", after={"client_secret": "s3cr3t", "nested": {
            "password": "hunter2", "name": "kept"}, "tokens": ["a"]})
    event = AuditEvent.objects.latest("id")
    assert "s3cr3t" not in json.dumps(event.after) and "hunter2" not in json.dumps(event.after)
    assert event.after["nested"]["name"] == "kept"
    directory.user_set_password(actor=world.ga, user=world.newcomer, password="a-long-new-password-1")
    assert "a-long-new-password-1" not in json.dumps(list(AuditEvent.objects.values("before", "after")))


def test_r23_events_cannot_be_edited_or_deleted_through_the_orm(world):
    event = AuditEvent.objects.latest("id")
    event.action = "forged"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).action != "forged"


def test_r23_admin_offers_no_add_change_or_delete(world):
    request = RequestFactory().get("/admin/")
    request.user = world.ga
    model_admin = admin_site._registry[AuditEvent]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)


def test_r23_the_log_verifies_when_untouched(world):
    audit_log.sequence()
    check = audit_log.verify_log()
    assert check.ok and check.events_checked == AuditEvent.objects.count() > 5 and check.pending == 0
    call_command("verify_audit_log")


def test_r23_raw_sql_edit_is_found_and_named(world):
    audit_log.sequence()
    victim = AuditEvent.objects.order_by("id")[3]
    _tamper(f"UPDATE {AuditEvent._meta.db_table} SET target_label = %s WHERE id = %s", ["forged", victim.pk])
    check = audit_log.verify_log()
    assert not check.ok and f"Event #{victim.pk}" in check.first_problem
    with pytest.raises(CommandError, match=f"#{victim.pk}"):
        call_command("verify_audit_log")


def test_r23_raw_sql_delete_is_found(world):
    audit_log.sequence()
    victim = AuditEvent.objects.order_by("id")[2]
    successor = AuditEvent.objects.filter(id__gt=victim.pk).order_by("id").first()
    _tamper(f"DELETE FROM {AuditEvent._meta.db_table} WHERE id = %s", [victim.pk])
    check = audit_log.verify_log()
    assert not check.ok and "was deleted" in check.first_problem and f"event #{successor.pk}" in check.first_problem


def test_r23_deleting_the_newest_events_is_found(world):
    audit_log.sequence()
    newest = AuditEvent.objects.latest("id")
    _tamper(f"DELETE FROM {AuditEvent._meta.db_table} WHERE id = %s", [newest.pk])
    check = audit_log.verify_log()
    assert not check.ok and "the newest events" in check.first_problem


def _bulk_events(n: int, batch: int = 5000) -> None:
    for start in range(0, n, batch):
        with transaction.atomic():
            audit.record_many(actor=None, changes=[
                audit.Change(action="test.bulk", target_label=f"row {start + i}", after={"i": start + i})
                for i in range(min(batch, n - start))
            ])


def _export_peak(client, fmt: str) -> tuple[int, int]:
    """Stream the whole export, returning (peak traced bytes, bytes produced)."""
    gc.collect()
    tracemalloc.start()
    response = client.get(f"/audit/export/?format={fmt}")
    produced = 0
    for chunk in response.streaming_content:
        produced += len(chunk)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, produced


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_r23_export_of_100000_events_streams_in_flat_memory(client, world, fmt):
    client.force_login(world.ga)
    _bulk_events(10_000)
    peak_small, size_small = _export_peak(client, fmt)
    _bulk_events(90_000)
    peak_large, size_large = _export_peak(client, fmt)
    assert size_large > 8 * size_small  # ten times the rows really went out
    # Memory does not grow with the row count: 10x the rows, well under 2x the peak.
    assert peak_large < 1.5 * peak_small + 1_000_000, (peak_small, peak_large)
    assert peak_large < size_large / 4


def test_r23_export_applies_the_filters(client, world):
    client.force_login(world.ga)
    response = client.get("/audit/export/?format=json&action=workspace.member_add&actor=system")
    rows = json.loads(b"".join(response.streaming_content))
    assert rows and {r["action"] for r in rows} == {"workspace.member_add"}
    assert response["Content-Disposition"].startswith("attachment;")
    response = client.get("/audit/export/?format=csv&target=nobody-matches-this")
    lines = b"".join(response.streaming_content).decode().strip().splitlines()
    assert lines == [",".join(c if c != "workspace__slug" else "workspace" for c in audit.EXPORT_COLUMNS)]


def test_r23_owners_see_only_their_workspaces_events(client, world):
    workspaces.membership_add(actor=world.other, workspace=world.beta, user=world.newcomer, role="contributor")
    client.force_login(world.owner)
    body = client.get("/audit/").content.decode()
    assert "newcomer" not in body
    assert "<span class=\"fw-semibold\">role</span>: <span class=\"text-muted\">(not set)</span>" in body
    assert "→</span> <span class=\"audit-new\" title=\"contributor\">contributor</span>" in body  # field: old → new
    rows = json.loads(b"".join(client.get("/audit/export/?format=json").streaming_content))
    assert rows and {r["workspace"] for r in rows} == {"alpha"}
