"""The ``rollup_sign_ins`` job: the sign-in log summarised once into ``SignInUsage`` and its per-day totals,
``SignInDay`` (docs/design.md, "Usage").

Each run moves the watermark (``SignInRollupMark``) forward over sign-in ids, in batches, one set-based statement
per batch (``INSERT … SELECT … GROUP BY … ON CONFLICT DO UPDATE``, on PostgreSQL and on SQLite alike), each batch in
its own transaction with the watermark row locked. Nothing is written on the token path.

**Exactly once.** Ids are handed out when a row is inserted but become visible when its transaction commits, so a
lower id can appear after a higher one. A run therefore integrates only up to a *settled* sighting: the highest id
seen by an earlier look (``observed_id``) once that look is ``USAGE_SETTLE_SECONDS`` old and, on PostgreSQL, no
transaction of this database that began before it and has written anything is still open. Every id at or below the
sighting then belongs to a committed row or to none, and ids above the watermark are never integrated twice because
the watermark moves in the same transaction as the rows it covers. SQLite has one writer at a time, so ids there
commit in order; the age rule alone applies.

**Two workers.** The watermark row is taken with ``SELECT … FOR UPDATE SKIP LOCKED``: a second worker finds it taken
and stops (counted as ``busy``); the next batch is taken by whichever worker asks first, from the watermark as it
then stands.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from governance.signin.models import AccessToken, SignIn
from governance.usage.models import PermissionUse, SignInDay, SignInRollupMark, SignInUsage, TokenUseMark
from portal import jobs

MARK = "sign_ins"
SCOPE_LENGTH = SignInUsage._meta.get_field("scope").max_length


def _tables() -> dict[str, str]:
    quote = connection.ops.quote_name
    return {"usage": quote(SignInUsage._meta.db_table), "day": quote(SignInDay._meta.db_table),
            "signin": quote(SignIn._meta.db_table), "scope_length": str(SCOPE_LENGTH)}


# One statement per batch: the sign-ins with ids in (low, high] grouped first per agent, UTC day, granted scope set
# and resource (a few groups, however many rows), then spread per granted scope (or none) into ``SignInUsage`` and
# summed per agent and day into ``SignInDay`` (a data-modifying CTE: the batch's rows are read once), each added to
# the rows already there. A sign-in that granted the same scope twice counts twice in its row, as it always did.
_POSTGRESQL = """
WITH g AS (
    SELECT s.agent_id, (s.at AT TIME ZONE 'UTC')::date AS day,
           CASE jsonb_typeof(s.granted_scopes) WHEN 'array' THEN s.granted_scopes ELSE '[]'::jsonb END AS scopes,
           s.resource,
           COUNT(*) FILTER (WHERE s.outcome = 'success') AS successes,
           COUNT(*) FILTER (WHERE s.outcome = 'failure') AS failures,
           COUNT(*) FILTER (WHERE s.outcome = 'blocked') AS blocked,
           MIN(s.at) FILTER (WHERE s.outcome = 'success') AS first_used_at,
           MAX(s.at) FILTER (WHERE s.outcome = 'success') AS last_used_at
    FROM {signin} s
    WHERE s.id > %s AND s.id <= %s AND s.agent_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
), totals AS (
    INSERT INTO {day} AS d (agent_id, day, successes, failures, blocked)
    SELECT agent_id, day, SUM(successes), SUM(failures), SUM(blocked) FROM g GROUP BY 1, 2
    ON CONFLICT (agent_id, day) DO UPDATE SET
        successes = d.successes + EXCLUDED.successes,
        failures = d.failures + EXCLUDED.failures,
        blocked = d.blocked + EXCLUDED.blocked
)
INSERT INTO {usage} AS u (agent_id, day, scope, resource, successes, failures, blocked, first_used_at, last_used_at)
SELECT g.agent_id, g.day, COALESCE(LEFT(e.scope, {scope_length}), ''), g.resource,
       SUM(g.successes), SUM(g.failures), SUM(g.blocked), MIN(g.first_used_at), MAX(g.last_used_at)
FROM g LEFT JOIN LATERAL jsonb_array_elements_text(g.scopes) AS e(scope) ON TRUE
GROUP BY 1, 2, 3, 4
ON CONFLICT (agent_id, scope, resource, day) DO UPDATE SET
    successes = u.successes + EXCLUDED.successes,
    failures = u.failures + EXCLUDED.failures,
    blocked = u.blocked + EXCLUDED.blocked,
    first_used_at = LEAST(u.first_used_at, EXCLUDED.first_used_at),
    last_used_at = GREATEST(u.last_used_at, EXCLUDED.last_used_at)
"""

# SQLite has no data-modifying CTE: the same two writes as two statements over the same ids, in the same transaction.
_SQLITE_DAYS = """
INSERT INTO {day} (agent_id, day, successes, failures, blocked)
SELECT s.agent_id, date(s.at), SUM(s.outcome = 'success'), SUM(s.outcome = 'failure'), SUM(s.outcome = 'blocked')
FROM {signin} s
WHERE s.id > %s AND s.id <= %s AND s.agent_id IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (agent_id, day) DO UPDATE SET
    successes = successes + excluded.successes,
    failures = failures + excluded.failures,
    blocked = blocked + excluded.blocked
"""

_SQLITE = """
INSERT INTO {usage} (agent_id, day, scope, resource, successes, failures, blocked, first_used_at, last_used_at)
SELECT s.agent_id, date(s.at), COALESCE(substr(g.value, 1, {scope_length}), ''), s.resource,
       SUM(s.outcome = 'success'), SUM(s.outcome = 'failure'), SUM(s.outcome = 'blocked'),
       MIN(CASE WHEN s.outcome = 'success' THEN s.at END), MAX(CASE WHEN s.outcome = 'success' THEN s.at END)
FROM {signin} s
LEFT JOIN json_each(CASE json_type(s.granted_scopes) WHEN 'array' THEN s.granted_scopes ELSE '[]' END) AS g ON 1
WHERE s.id > %s AND s.id <= %s AND s.agent_id IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (agent_id, scope, resource, day) DO UPDATE SET
    successes = successes + excluded.successes,
    failures = failures + excluded.failures,
    blocked = blocked + excluded.blocked,
    first_used_at = CASE WHEN excluded.first_used_at IS NOT NULL
                              AND (first_used_at IS NULL OR excluded.first_used_at < first_used_at)
                         THEN excluded.first_used_at ELSE first_used_at END,
    last_used_at = CASE WHEN excluded.last_used_at IS NOT NULL
                             AND (last_used_at IS NULL OR excluded.last_used_at > last_used_at)
                        THEN excluded.last_used_at ELSE last_used_at END
"""

# Still open: a transaction of this database, other than ours, that has written something and began before the
# sighting (it may hold an id at or below it that is not committed yet).
_OPEN_WRITERS_BEFORE = """
SELECT EXISTS (SELECT 1 FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_xid IS NOT NULL AND xact_start < %s)
"""


def integrate(low: int, high: int) -> int:
    """Add the sign-ins with ids in (low, high] to the rollup (``SignInUsage`` and ``SignInDay``); returns how many
    ``SignInUsage`` rows were written. The caller holds the watermark and moves it to ``high`` in the same
    transaction."""
    if high <= low:
        return 0
    tables = _tables()
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(_SQLITE_DAYS.format(**tables), [low, high])
            cursor.execute(_SQLITE.format(**tables), [low, high])
            return max(cursor.rowcount, 0)
        # No JIT for this statement: over the log's day partitions its plan's estimated cost sets off inlining and
        # optimisation of hundreds of functions, about 20 s per batch for a statement that runs in about one
        # (docs/design.md, "Usage"). Restored after it (a caller's outer transaction keeps its own setting); a failed
        # statement rolls the setting back with its transaction or savepoint.
        cursor.execute("SELECT current_setting('jit'), set_config('jit', 'off', true)")
        jit = cursor.fetchone()[0]
        cursor.execute(_POSTGRESQL.format(**tables), [low, high])
        written = max(cursor.rowcount, 0)
        cursor.execute("SELECT set_config('jit', %s, true)", [jit])
        return written


def _lock() -> SignInRollupMark | None:
    """The watermark row, locked for this transaction; None when another worker holds it."""
    if not SignInRollupMark.objects.filter(name=MARK).exists():
        SignInRollupMark.objects.bulk_create([SignInRollupMark(name=MARK)], ignore_conflicts=True)
    return SignInRollupMark.objects.select_for_update(skip_locked=True).filter(name=MARK).first()


def _observe(mark: SignInRollupMark) -> None:
    """Note the highest sign-in id visible now, and when (the database's clock on PostgreSQL)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"SELECT COALESCE(MAX(id), 0), clock_timestamp() FROM {_tables()['signin']}")
            mark.observed_id, mark.observed_at = cursor.fetchone()
        else:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {_tables()['signin']}")
            mark.observed_id, mark.observed_at = cursor.fetchone()[0], timezone.now()


def settled(observed_at: datetime | None, settle_seconds: float | None = None) -> bool:
    """Whether every sign-in id handed out before ``observed_at`` is committed or will never be: the sighting is
    ``USAGE_SETTLE_SECONDS`` old and (PostgreSQL) no writing transaction of this database that began before it is
    still open."""
    if observed_at is None:
        return False
    wait = settings.USAGE_SETTLE_SECONDS if settle_seconds is None else settle_seconds
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return (timezone.now() - observed_at).total_seconds() >= wait
        cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp() - %s)", [observed_at])
        if float(cursor.fetchone()[0]) < wait:
            return False
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # this transaction's cached view of the activity
        cursor.execute(_OPEN_WRITERS_BEFORE, [observed_at])
        return not cursor.fetchone()[0]


def _first_id_after(low: int, settled_id: int) -> int:
    """The first sign-in id above ``low``, or just past ``settled_id`` when there is none up to it: a settled range
    holds no row that could still appear, so a gap in the ids (a new installation, rows removed by retention) is
    crossed in one step instead of batch by batch. One index lookup."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id) FROM {_tables()['signin']} WHERE id > %s AND id <= %s", [low, settled_id])
        found = cursor.fetchone()[0]
    return settled_id + 1 if found is None else found


def watermark() -> int:
    """Every sign-in with an id at or below this is in the rollup (0 before the first run)."""
    return SignInRollupMark.objects.filter(name=MARK).values_list("integrated_through", flat=True).first() or 0


@jobs.register("rollup_sign_ins", "Add the new sign-ins to the usage summary that pages, reviews, findings and "
                                  "risk detections read.")
def rollup_sign_ins(*, settle_seconds: float | None = None) -> dict:
    """Integrate the settled sign-ins past the watermark, in batches of ``USAGE_ROLLUP_BATCH`` ids, then note the
    highest id visible now for the next run (and integrate it at once when it is already settled). Idempotent and
    safe on two workers: each batch reads the watermark under its row lock and moves it in the same transaction."""
    batch = max(1, settings.USAGE_ROLLUP_BATCH)
    counts = {"batches": 0, "rows_written": 0, "ids_integrated": 0, "busy": 0}
    looked = False
    while True:
        with transaction.atomic():
            mark = _lock()
            if mark is None:
                counts["busy"] = 1
                break
            if mark.observed_id is None or mark.observed_id <= mark.integrated_through:
                if looked:
                    break
                _observe(mark)
                looked = True
                mark.updated_at = timezone.now()
                mark.save(update_fields=["observed_id", "observed_at", "updated_at"])
            if mark.observed_id <= mark.integrated_through or not settled(mark.observed_at, settle_seconds):
                break
            low = mark.integrated_through
            high = min(mark.observed_id, max(low, _first_id_after(low, mark.observed_id) - 1) + batch)
            counts["rows_written"] += integrate(low, high)
            counts["ids_integrated"] += high - low
            counts["batches"] += 1
            mark.integrated_through, mark.updated_at = high, timezone.now()
            mark.save(update_fields=["integrated_through", "updated_at"])
    counts["integrated_through"] = watermark()
    counts.update(fold_token_use())
    return counts


# --- token use: the evidence of use per permission (docs/design.md, "Usage") ---------------------------------------
TOKEN_MARK = "tokens"
#: A token's use is stamped with the request's clock and becomes visible at its commit: the fold and the selectors'
#: tail look this far behind the mark, so a late commit (or a web server's clock a little behind) is still counted.
TOKEN_USE_OVERLAP = timedelta(minutes=5)
FOLD_CHUNK = 5000


def token_use_tail_start() -> datetime | None:
    """Token uses at or after this are read from the tokens, older ones from ``PermissionUse`` (None: nothing has
    been folded yet, every use is read from the tokens)."""
    folded = TokenUseMark.objects.filter(name=TOKEN_MARK).values_list("folded_through", flat=True).first()
    return folded - TOKEN_USE_OVERLAP if folded is not None else None


def fold_token_use(now: datetime | None = None) -> dict:
    """Fold the tokens' ``last_used_at`` into ``PermissionUse`` (one row per agent, permission and UTC day, the
    latest use kept): the tokens used since the mark minus the overlap, read on their partial index in chunks, then
    one read of the rows already there and one upsert. Under the mark's row lock (SKIP LOCKED: a second worker
    stops); idempotent, since a rerun takes the same maxima."""
    now = now or timezone.now()
    with transaction.atomic():
        TokenUseMark.objects.get_or_create(name=TOKEN_MARK)
        mark = TokenUseMark.objects.select_for_update(skip_locked=True).filter(name=TOKEN_MARK).first()
        if mark is None:
            return {"token_uses_folded": 0, "token_fold_busy": 1}
        tokens = AccessToken.objects.filter(agent_id__isnull=False, last_used_at__isnull=False, last_used_at__lte=now)
        if mark.folded_through is not None:
            tokens = tokens.filter(last_used_at__gte=mark.folded_through - TOKEN_USE_OVERLAP)
        latest: dict[tuple[int, str, object], datetime] = {}
        for agent_id, scopes, used_at in tokens.order_by().values_list("agent_id", "scopes", "last_used_at") \
                .iterator(chunk_size=FOLD_CHUNK):
            day = used_at.astimezone(UTC).date()
            for scope in scopes if isinstance(scopes, list) else []:
                key = (agent_id, str(scope)[:150], day)
                if scope and (key not in latest or used_at > latest[key]):
                    latest[key] = used_at
        if latest:
            for agent_id, permission, day, used_at in PermissionUse.objects.filter(
                    agent_id__in={k[0] for k in latest}, day__in={k[2] for k in latest}).values_list(
                    "agent_id", "permission", "day", "last_used_at"):
                key = (agent_id, permission, day)
                if key in latest and used_at > latest[key]:
                    latest[key] = used_at
            PermissionUse.objects.bulk_create(
                [PermissionUse(agent_id=a, permission=p, day=d, last_used_at=t) for (a, p, d), t in latest.items()],
                batch_size=FOLD_CHUNK, update_conflicts=True, unique_fields=["agent", "permission", "day"],
                update_fields=["last_used_at"])
        mark.folded_through = now
        mark.save(update_fields=["folded_through"])
    return {"token_uses_folded": len(latest), "token_fold_busy": 0}


def catch_up() -> dict:
    """Integrate everything committed so far, now (benchmarks and tests that just loaded sign-ins while nothing else
    writes): one run that does not wait for its own sighting to age."""
    return rollup_sign_ins(settle_seconds=0)
