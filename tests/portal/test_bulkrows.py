"""portal.bulkrows (docs/design.md, "Bulk inserts without model instances"): the rows it writes are the rows
bulk_create writes, defaults included."""

from __future__ import annotations

import pytest
from django.utils import timezone

from portal import audit, bulkrows
from portal.models import AuditEvent, User

pytestmark = pytest.mark.django_db

COMPARED = ("password", "last_login", "is_superuser", "first_name", "last_name", "email", "is_staff", "is_active",
            "display_name", "manager_id", "kind", "last_seen_at")


def test_insert_rows_fills_every_other_column_as_bulk_create_does():
    made = User.objects.bulk_create([User(username="by-bulk-create", display_name="A", password="!x")])[0]
    pks = bulkrows.insert_rows(User, ("username", "display_name", "password"),
                               [("by-rows-1", "A", "!x"), ("by-rows-2", "A", "!x")], returning_pk=True)
    rows = {u.username: u for u in User.objects.filter(pk__in=[made.pk, *pks])}
    assert [rows["by-rows-1"].pk, rows["by-rows-2"].pk] == pks  # keys in the order of the rows
    reference = rows["by-bulk-create"]
    for username in ("by-rows-1", "by-rows-2"):
        row = rows[username]
        assert {f: getattr(row, f) for f in COMPARED} == {f: getattr(reference, f) for f in COMPARED}
        assert row.date_joined is not None and abs(row.date_joined - reference.date_joined).total_seconds() < 60
    # a callable default is called per row: each agent user gets its own OAuth subject
    assert len({rows[u].oauth_subject for u in rows}) == 3


def test_insert_objects_gives_keys_and_marks_the_instances_saved():
    users = [User(username=f"obj-{i}", display_name=f"Obj {i}") for i in range(3)]
    assert bulkrows.insert_objects(users) == users
    assert all(u.pk and not u._state.adding for u in users)
    assert list(User.objects.filter(username__startswith="obj-").order_by("pk").values_list("pk", "username")) == [
        (u.pk, u.username) for u in users]


def test_record_many_without_instances_writes_the_same_event():
    actor = User.objects.create(username="auditor")
    changes = [audit.Change("test.same", actor, after={"n": 1, "at": timezone.now(), "nested": {"token": "x"}})]
    audit.record_many(actor=actor, changes=changes)
    assert audit.record_many(actor=actor, changes=changes, instances=False) == []
    first, second = AuditEvent.objects.filter(action="test.same").order_by("pk")
    columns = [c for c in audit.EVENT_COLUMNS if c != "created_at"]
    assert [getattr(second, c) for c in columns] == [getattr(first, c) for c in columns]
    assert second.after["nested"] == {"token": audit.REDACTED}


def test_insert_rows_keeps_every_character_of_a_value():
    names = ['quote " and \\ backslash', "line\nbreak\ttab", "é ü 中文 🙂", "{\"json\": [1]}", "\\u00e9 stays as typed"]
    pks = bulkrows.insert_rows(User, ("username", "display_name"),
                               [(f"chars-{i}", name) for i, name in enumerate(names)], returning_pk=True)
    assert [User.objects.get(pk=pk).display_name for pk in pks] == names
