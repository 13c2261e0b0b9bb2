"""The sign-in log partitioned by day, with retention (docs/design.md, "The sign-in log at volume"): the migration
leaves a partitioned table on PostgreSQL, the token endpoint's raw insert lands even on a day without a partition,
the daily job creates days ahead, moves what the default partition caught and drops only whole days older than
``SIGNIN_RETENTION_DAYS``; SQLite's batched deletes keep the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from governance.signin import fastpath, partitions
from governance.signin.models import SignIn
from portal.models import AuditEvent, JobRun

pytestmark = pytest.mark.django_db


def _row(at: datetime, client_id: str = "c") -> SignIn:
    return SignIn.objects.create(at=at, client_id=client_id, actor_kind="agent", outcome="success")


def _partition_of(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{partitions.table()}" WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def _midnight(days_from_today: int) -> datetime:
    today = timezone.now().astimezone(UTC).date()
    day = today + timedelta(days=days_from_today)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_the_log_is_a_table_partitioned_by_day_with_the_next_week_ready(postgres):
    assert partitions.is_partitioned()
    days = partitions.partition_days()
    today = timezone.now().astimezone(UTC).date()
    assert {today + timedelta(days=i) for i in range(partitions.AHEAD_DAYS + 1)} <= set(days)
    row = _row(timezone.now())
    assert _partition_of(row.pk) == partitions.partition_name(today)
    assert SignIn.objects.get(pk=row.pk).client_id == "c"  # Django still reads a row by its id alone


def test_the_fast_path_insert_lands_in_the_default_partition_on_a_day_without_one(postgres):
    far = timezone.now() + timedelta(days=60)
    sign_in = dict.fromkeys(fastpath.SIGN_IN_COLUMNS, "")
    sign_in.update(at=far, agent_id=None, subject_id=None, ip=None, client_id="ahead", actor_kind="unknown",
                   outcome="failure", requested_scopes=[], granted_scopes=[], policies=[])
    fastpath.record(sign_in, None)
    row = SignIn.objects.get(client_id="ahead")
    assert _partition_of(row.pk) == f"{partitions.table()}_default"

    counts = partitions.maintain(now=far)  # the job catches up: that day gets its partition and the row moves
    assert counts["moved_from_default"] == 1
    assert _partition_of(row.pk) == partitions.partition_name(far.astimezone(UTC).date())
    assert SignIn.objects.filter(client_id="ahead").count() == 1


def test_the_job_is_idempotent(postgres):
    partitions.maintain()
    again = partitions.maintain()
    assert again["created"] == 0 and again["dropped"] == 0 and again["moved_from_default"] == 0


def test_retention_never_drops_a_partition_younger_than_the_setting(postgres, settings):
    settings.SIGNIN_RETENTION_DAYS = 3
    now = timezone.now()
    cutoff = now - timedelta(days=3)
    # days from five days ago to today, each with a row at noon, and a row just after the cutoff
    with connection.cursor() as cursor:
        for offset in range(-5, 1):
            if _midnight(offset).date() not in partitions.partition_days():
                partitions._create_day(cursor, _midnight(offset).date())
    rows = [_row(_midnight(offset) + timedelta(hours=12), f"day{offset}") for offset in range(-5, 1)]
    rows += [_row(cutoff + timedelta(minutes=1), "just-younger"), _row(cutoff - timedelta(minutes=1), "just-older")]

    counts = partitions.maintain(now=now)

    remaining = partitions.partition_days()
    for day in remaining:  # every partition left ends after the cutoff
        assert partitions._midnight(day + timedelta(days=1)) > cutoff
    assert partitions.partition_name(cutoff.astimezone(UTC).date()) in remaining.values()
    for row in rows:
        day_ended = partitions._midnight(row.at.astimezone(UTC).date() + timedelta(days=1))
        kept = SignIn.objects.filter(pk=row.pk).exists()
        if row.at >= cutoff:
            assert kept, f"{row.client_id} is younger than the setting and was dropped"
        elif day_ended <= cutoff:
            assert not kept, f"{row.client_id}'s whole day is past the setting and was kept"
    assert counts["dropped"] >= 2
    event = AuditEvent.objects.get(action="signin.retention")
    assert event.after["dropped"] == counts["dropped"]


def test_batched_deletes_keep_the_same_rows_as_the_partitions(settings):
    """SQLite's retention (it runs through the ORM, so it is checked on any database)."""
    settings.SIGNIN_RETENTION_DAYS = 10
    now = timezone.now()
    old = [_row(now - timedelta(days=11, minutes=i), "old") for i in range(5)]
    young = _row(now - timedelta(days=9), "young")
    partitions.DELETE_BATCH, batch = 2, partitions.DELETE_BATCH
    try:
        deleted = partitions._delete_older_than(partitions.retention_cutoff(now))
    finally:
        partitions.DELETE_BATCH = batch
    assert deleted == len(old)
    assert list(SignIn.objects.values_list("client_id", flat=True)) == ["young"]
    assert young.pk
    assert AuditEvent.objects.filter(action="signin.retention").count() == 3  # one per batch of 2


def test_the_job_runs_from_the_command_and_records_its_run(postgres):
    call_command("run_governance_jobs", "--job", "maintain_sign_in_partitions")
    run = JobRun.objects.get(job="maintain_sign_in_partitions")
    assert run.status == "succeeded", run.error
    assert set(run.counts) >= {"created", "dropped"}
