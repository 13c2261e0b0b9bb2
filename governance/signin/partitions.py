"""The sign-in log's days and their retention (docs/design.md, "The sign-in log at volume").

On PostgreSQL ``signin_signin`` is partitioned by range on ``at``, one partition a day (UTC) named
``signin_signin_pYYYYMMDD``, plus a default partition that catches a row whose day has no partition yet (so the
token endpoint's insert never fails for want of one). A day, not a month: 10,000,000 rows over 90 days is about
110,000 rows a day, so the default last-24-hours view reads one or two small partitions, and retention drops
exactly the days past ``SIGNIN_RETENTION_DAYS`` instead of keeping up to a month too many.

The daily job ``maintain_sign_in_partitions`` creates the next ``AHEAD_DAYS`` days, moves any rows the default
partition caught into their own day's new partition, and drops every partition that ends at or before the
retention cutoff: a ``DROP TABLE`` of a whole day, never a ``DELETE`` scan. It never drops a partition that holds a
row younger than the setting. It is idempotent, and two workers running it at once take turns (an advisory lock).
On SQLite (a plain table) the job deletes rows older than the cutoff in batches instead.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from governance.signin.models import SignIn
from portal import audit, jobs

AHEAD_DAYS = 7
DELETE_BATCH = 10_000
_LOCK_KEY = 0x5161_4E50  # the advisory lock two workers running the job at once share
_DAY = re.compile(r"_p(\d{8})$")


def table() -> str:
    return SignIn._meta.db_table


def partition_name(day: date) -> str:
    return f"{table()}_p{day:%Y%m%d}"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def is_partitioned() -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = %s AND relkind = 'p'", [table()])
        return cursor.fetchone() is not None


def partition_days() -> dict[date, str]:
    """The day partitions that exist, by their day (the default partition is not a day)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = %s::regclass", [table()])
        names = [row[0] for row in cursor.fetchall()]
    days = {}
    for name in names:
        match = _DAY.search(name)
        if match:
            days[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return days


def retention_cutoff(now: datetime | None = None) -> datetime:
    """Rows older than this may go: ``SIGNIN_RETENTION_DAYS`` before now."""
    return (now or timezone.now()) - timedelta(days=settings.SIGNIN_RETENTION_DAYS)


def _create_day(cursor, day: date) -> int:
    """Create one day's partition; rows the default partition caught for that day move into it first (a new
    partition may not be attached while the default partition holds rows of its range). Returns rows moved."""
    name, parent, default = partition_name(day), table(), f"{table()}_default"
    start, end = _midnight(day), _midnight(day + timedelta(days=1))
    cursor.execute(f'SELECT 1 FROM "{default}" WHERE at >= %s AND at < %s LIMIT 1', [start, end])
    if cursor.fetchone() is None:
        cursor.execute(f'CREATE TABLE "{name}" PARTITION OF "{parent}" FOR VALUES FROM (%s) TO (%s)', [start, end])
        return 0
    cursor.execute(f'CREATE TABLE "{name}" (LIKE "{parent}" INCLUDING DEFAULTS)')
    cursor.execute(f'WITH moved AS (DELETE FROM "{default}" WHERE at >= %s AND at < %s RETURNING *) '
                   f'INSERT INTO "{name}" SELECT * FROM moved', [start, end])
    moved = cursor.rowcount
    cursor.execute(f'ALTER TABLE "{parent}" ATTACH PARTITION "{name}" FOR VALUES FROM (%s) TO (%s)', [start, end])
    return moved


def create_days(first: date, last: date) -> int:
    """Create the day partitions from ``first`` to ``last`` (inclusive) that do not exist yet; returns how many
    (for loading history, e.g. the benchmarks; the job creates the days ahead)."""
    if not is_partitioned():
        return 0
    created = 0
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        existing = partition_days()
        day = first
        while day <= last:
            if day not in existing:
                _create_day(cursor, day)
                created += 1
            day += timedelta(days=1)
    return created


def maintain(now: datetime | None = None) -> dict:
    """Create the days ahead (and the days of rows the default partition caught), drop the days past retention."""
    now = now or timezone.now()
    cutoff = retention_cutoff(now)
    if not is_partitioned():
        return {"deleted": _delete_older_than(cutoff)}
    today = now.astimezone(UTC).date()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        # Deferred foreign-key checks of rows written earlier in an enclosing transaction would block a DROP.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        existing = partition_days()
        cursor.execute(f'SELECT DISTINCT (at AT TIME ZONE \'UTC\')::date FROM "{table()}_default" WHERE at >= %s',
                       [cutoff])
        caught = {row[0] for row in cursor.fetchall()}
        wanted = {today + timedelta(days=i) for i in range(AHEAD_DAYS + 1)} | caught
        created = moved = 0
        for day in sorted(wanted - set(existing)):
            moved += _create_day(cursor, day)
            created += 1
        dropped = 0
        for day, name in sorted(existing.items()):
            if _midnight(day + timedelta(days=1)) <= cutoff:  # the whole day is older than the setting
                cursor.execute(f'DROP TABLE "{name}"')
                dropped += 1
        cursor.execute(f'DELETE FROM "{table()}_default" WHERE at < %s', [cutoff])
        stale_default = cursor.rowcount
        counts = {"created": created, "moved_from_default": moved, "dropped": dropped,
                  "deleted_from_default": stale_default}
        if dropped or stale_default:
            _audit_retention(cutoff, counts)
    return counts


def _audit_retention(cutoff: datetime, counts: dict) -> None:
    """Forgetting sign-ins is a change to the record: one audit event says how much went and up to when."""
    audit.record(actor=None, action="signin.retention", target_label="sign-in log",
                 after={"before": cutoff.isoformat(), "retention_days": settings.SIGNIN_RETENTION_DAYS, **counts})


def _delete_older_than(cutoff: datetime) -> int:
    """SQLite's retention: delete by primary key in batches, so a long backlog never holds one huge transaction."""
    deleted = 0
    while True:
        ids = list(SignIn.objects.filter(at__lt=cutoff).order_by().values_list("pk", flat=True)[:DELETE_BATCH])
        if not ids:
            return deleted
        with transaction.atomic():
            batch = SignIn.objects.filter(pk__in=ids).delete()[0]
            _audit_retention(cutoff, {"deleted": batch})
        deleted += batch


@jobs.register("maintain_sign_in_partitions", "Create the sign-in log's days ahead and drop the days older than "
               f"{settings.SIGNIN_RETENTION_DAYS} days (whole days at a time).")
def maintain_sign_in_partitions() -> dict:
    return maintain()
