"""The usage rollup (docs/design.md, "Usage"): it equals a direct aggregation of the sign-in log on random data,
whenever and however often the job runs; rows that commit late and two workers racing change nothing; the job is
scheduled, idempotent and recorded like the other jobs."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from agents import registry
from agents import timeline as agent_timeline
from governance.runs import timeline
from governance.signin.models import SignIn
from governance.usage import rollup, selectors
from governance.usage.models import SignInDay, SignInRollupMark, SignInUsage
from portal import jobs
from portal.models import JobRun
from portal.schedules import JOB_SCHEDULES, schedule_period
from tests.factories import agent_spec

SCOPES = ("User.Read.All", "Policy.Read.All", "AuditLog.Read.All")
RESOURCES = ("", "https://api.example/", "https://mcp.example/")
OUTCOMES = ("success", "failure", "blocked")
BASE = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)  # rows fall on both sides of two UTC midnights


def _agents(w) -> list:
    beta = registry.agent_create(actor=w.other, workspace=w.beta, spec=agent_spec(
        w.blueprint, "beta-agent", sponsors=[w.other], owners=[w.other_b])).agent
    return [w.agent, beta, None]  # None: an unknown client (not an agent's use; not in the rollup)


def _sign_in(agent, at: datetime, outcome: str, scopes: list[str], resource: str) -> SignIn:
    return SignIn(agent=agent, at=at, client_id=agent.identity.client_id if agent else "unknown", outcome=outcome,
                  granted_scopes=scopes if outcome == "success" else [], requested_scopes=scopes, resource=resource)


def direct_aggregation() -> dict[tuple, tuple]:
    """The rollup's rows computed from the log itself, in Python: {(agent, day, scope, resource): (successes,
    failures, blocked, first use, last use)}."""
    found: dict[tuple, list] = {}
    for agent_id, at, outcome, granted, resource in SignIn.objects.filter(agent__isnull=False).values_list(
            "agent_id", "at", "outcome", "granted_scopes", "resource"):
        for scope in granted or [""]:
            row = found.setdefault((agent_id, at.astimezone(UTC).date(), scope, resource), [0, 0, 0, None, None])
            row[OUTCOMES.index(outcome)] += 1
            if outcome == "success":
                row[3] = at if row[3] is None else min(row[3], at)
                row[4] = at if row[4] is None else max(row[4], at)
    return {key: tuple(value) for key, value in found.items()}


def rolled_up() -> dict[tuple, tuple]:
    return {(r.agent_id, r.day, r.scope, r.resource): (r.successes, r.failures, r.blocked, r.first_used_at,
                                                       r.last_used_at) for r in SignInUsage.objects.all()}


def direct_day_totals(agent_id: int | None = None) -> dict[tuple, tuple]:
    """The per-day totals computed from the log itself, each sign-in once: {(agent, UTC day): (successes,
    failures, blocked)}."""
    found: dict[tuple, list] = {}
    rows = SignIn.objects.filter(agent__isnull=False)
    if agent_id is not None:
        rows = rows.filter(agent_id=agent_id)
    for row_agent, at, outcome in rows.values_list("agent_id", "at", "outcome"):
        found.setdefault((row_agent, at.astimezone(UTC).date()), [0, 0, 0])[OUTCOMES.index(outcome)] += 1
    return {key: tuple(value) for key, value in found.items()}


def rolled_up_days() -> dict[tuple, tuple]:
    return {(r.agent_id, r.day): (r.successes, r.failures, r.blocked) for r in SignInDay.objects.all()}


def selected_days(agent_ids, first_day, last_day) -> dict[tuple, tuple]:
    """What the timeline's selector answers (rollup + tail), in the shape of ``direct_day_totals``."""
    return {(agent_id, day): (n.successes, n.failures, n.blocked) for agent_id in agent_ids
            for day, n in selectors.sign_ins_per_day(agent_id, first_day, last_day).items()}


def direct_usage() -> dict[int, tuple]:
    """What the usage selector must answer, from the log itself: {agent: (last use, {scope: (first, last)},
    {resource: last})}."""
    last: dict[int, datetime] = {}
    scopes: dict[int, dict] = defaultdict(dict)
    resources: dict[int, dict] = defaultdict(dict)
    for agent_id, at, granted, resource in SignIn.objects.filter(agent__isnull=False, outcome="success") \
            .values_list("agent_id", "at", "granted_scopes", "resource"):
        last[agent_id] = max(last.get(agent_id, at), at)
        for scope in granted:
            first_seen, last_seen = scopes[agent_id].get(scope, (at, at))
            scopes[agent_id][scope] = (min(first_seen, at), max(last_seen, at))
        resources[agent_id][resource] = max(resources[agent_id].get(resource, at), at)
    return {agent_id: (last[agent_id], dict(scopes[agent_id]), dict(resources[agent_id])) for agent_id in last}


def selected_usage(agent_ids) -> dict[int, tuple]:
    return {agent_id: (used.last_used_at, {s: (u.first, u.last) for s, u in used.scopes.items()},
                       {r: u.last for r, u in used.resources.items()})
            for agent_id, used in selectors.usage(agent_ids).items()}


def _reset() -> None:
    SignIn.objects.all().delete()
    SignInUsage.objects.all().delete()
    SignInDay.objects.all().delete()
    SignInRollupMark.objects.all().delete()


rows = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3 * 24 * 60), st.sampled_from(OUTCOMES),
                          st.lists(st.sampled_from(SCOPES), unique=True, max_size=3), st.sampled_from(RESOURCES)),
                max_size=40)


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunks=st.lists(rows, min_size=1, max_size=4), batch=st.integers(1, 7))
def test_the_rollup_equals_a_direct_aggregation_of_the_log_on_random_data(registry_world, settings, chunks, batch):
    """Sign-ins arrive in chunks; the job runs between chunks with a random batch size. At every point the
    selectors (rollup + tail: usage, and the timeline's per-day totals) answer what the log says, and once caught up
    the rollup's rows and its per-day totals are the log's."""
    _reset()
    settings.USAGE_ROLLUP_BATCH = batch
    agents = getattr(registry_world, "usage_agents", None) or _agents(registry_world)
    registry_world.usage_agents = agents
    ids = [a.pk for a in agents if a is not None]
    for chunk in chunks:
        SignIn.objects.bulk_create([_sign_in(agents[a], BASE + timedelta(minutes=m), outcome, scopes, resource)
                                    for a, m, outcome, scopes, resource in chunk])
        assert selected_usage(ids) == direct_usage()  # the tail alone, or rollup + tail
        assert selected_days(ids, BASE.date(), BASE.date() + timedelta(days=3)) == direct_day_totals()
        rollup.catch_up()
        assert selected_usage(ids) == direct_usage()
        assert selected_days(ids, BASE.date(), BASE.date() + timedelta(days=3)) == direct_day_totals()
    assert rolled_up() == direct_aggregation()
    assert rolled_up_days() == direct_day_totals()
    assert rollup.watermark() == (SignIn.objects.order_by("-id").values_list("id", flat=True).first() or 0)


@pytest.mark.django_db
def test_the_job_is_idempotent_and_a_second_run_changes_nothing(registry_world):
    agents = _agents(registry_world)
    randomly = random.Random(18)
    SignIn.objects.bulk_create([
        _sign_in(randomly.choice(agents), BASE + timedelta(minutes=randomly.randrange(4000)),
                 randomly.choice(OUTCOMES), randomly.sample(SCOPES, randomly.randrange(4)), randomly.choice(RESOURCES))
        for _ in range(300)])
    first = rollup.catch_up()
    assert first["batches"] == 1 and first["busy"] == 0
    assert first["integrated_through"] == SignIn.objects.order_by("-id").values_list("id", flat=True).first()
    before, days = rolled_up(), rolled_up_days()
    assert before == direct_aggregation() and days == direct_day_totals()
    again = rollup.catch_up()
    assert again["ids_integrated"] == 0 and again["rows_written"] == 0
    assert rolled_up() == before and rolled_up_days() == days


@pytest.mark.django_db
def test_a_gap_in_the_ids_is_crossed_in_one_step_not_batch_by_batch(registry_world, settings):
    """Ids the log no longer holds (a new installation, days dropped by retention) cost no empty batches."""
    settings.USAGE_ROLLUP_BATCH = 2
    agent = registry_world.agent
    SignIn.objects.bulk_create([_sign_in(agent, BASE, "failure", [], "") for _ in range(50)])
    SignIn.objects.all().delete()
    SignIn.objects.bulk_create([_sign_in(agent, BASE, "success", ["User.Read.All"], "") for _ in range(2)])
    counts = rollup.catch_up()
    assert counts["batches"] == 1
    assert rolled_up() == direct_aggregation()


@pytest.mark.django_db
def test_a_sighting_is_integrated_only_once_it_is_settled(registry_world, settings):
    """With the default settle time, a run only notes the highest id; the next run past the settle time integrates
    it. Meanwhile the selector reads those rows from the log's tail."""
    settings.USAGE_SETTLE_SECONDS = 3600
    agent = registry_world.agent
    SignIn.objects.bulk_create([_sign_in(agent, BASE, "success", ["User.Read.All"], "")])
    counts = rollup.rollup_sign_ins()
    assert counts["ids_integrated"] == 0 and not SignInUsage.objects.exists()
    assert selectors.last_used([agent.pk]) == {agent.pk: BASE}
    mark = SignInRollupMark.objects.get()
    SignInRollupMark.objects.filter(pk=mark.pk).update(observed_at=mark.observed_at - timedelta(hours=2))
    assert rollup.rollup_sign_ins()["batches"] == 1
    assert rolled_up() == direct_aggregation()
    assert selectors.last_used([agent.pk]) == {agent.pk: BASE}


def test_rollup_sign_ins_is_scheduled_every_minute_and_registered():
    assert "rollup_sign_ins" in jobs.REGISTRY
    assert schedule_period(JOB_SCHEDULES["rollup_sign_ins"]) == timedelta(minutes=1)


@pytest.mark.django_db
def test_run_governance_jobs_runs_rollup_sign_ins_and_records_a_job_run(registry_world, settings):
    settings.USAGE_SETTLE_SECONDS = 0
    SignIn.objects.bulk_create([_sign_in(registry_world.agent, BASE, "success", ["User.Read.All"], "")])
    call_command("run_governance_jobs", "--job", "rollup_sign_ins")
    run = JobRun.objects.get(job="rollup_sign_ins")
    assert run.status == "succeeded" and run.counts["batches"] == 1 and run.finished_at is not None
    assert rolled_up() == direct_aggregation()


# --- PostgreSQL: late commits and two workers ------------------------------------------------------------------
def _in_thread(work):
    def run():
        try:
            work()
        finally:
            connection.close()
    return threading.Thread(target=run)


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_while_rows_commit_late_integrate_every_sign_in_exactly_once(postgres, registry_world):
    """Two workers run the job in a loop while one writer inserts sign-ins one by one and another holds each of its
    rows open for a while (a lower id committed after higher ones). Afterwards the rollup is the log's aggregation:
    no row missed, none counted twice."""
    agents = _agents(registry_world)
    done = threading.Event()
    runs = {"busy": 0, "batches": 0}
    errors: list[BaseException] = []

    def writer(seed: int, hold: float, count: int):
        randomly = random.Random(seed)
        try:
            for _ in range(count):
                with transaction.atomic():
                    _sign_in(randomly.choice(agents), BASE + timedelta(minutes=randomly.randrange(4000)),
                             randomly.choice(OUTCOMES), randomly.sample(SCOPES, randomly.randrange(4)),
                             randomly.choice(RESOURCES)).save()
                    time.sleep(hold)  # the id is taken; the row commits only now
        except BaseException as error:  # noqa: BLE001  (reported by the test)
            errors.append(error)

    def worker():
        try:
            while not done.is_set():
                counts = rollup.rollup_sign_ins(settle_seconds=0)
                runs["busy"] += counts["busy"]
                runs["batches"] += counts["batches"]
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    writers = [_in_thread(lambda: writer(1, 0.0, 150)), _in_thread(lambda: writer(2, 0.05, 30))]
    workers = [_in_thread(worker), _in_thread(worker)]
    for thread in writers + workers:
        thread.start()
    for thread in writers:
        thread.join(60)
    done.set()
    for thread in workers:
        thread.join(60)
    assert not errors, errors
    assert runs["batches"] > 0
    rollup.catch_up()
    assert rolled_up() == direct_aggregation()  # a row counted twice or missed would change a count
    assert rolled_up_days() == direct_day_totals()
    assert rollup.watermark() == SignIn.objects.order_by("-id").values_list("id", flat=True).first()


@pytest.mark.django_db(transaction=True)
def test_a_second_worker_finds_the_watermark_taken_and_stops(postgres, registry_world):
    SignIn.objects.bulk_create([_sign_in(registry_world.agent, BASE, "success", ["User.Read.All"], "")])
    rollup.rollup_sign_ins(settle_seconds=0)  # the watermark row exists
    SignIn.objects.bulk_create([_sign_in(registry_world.agent, BASE, "failure", [], "")])
    held, release = threading.Event(), threading.Event()

    def hold():
        with transaction.atomic():
            SignInRollupMark.objects.select_for_update().get()
            held.set()
            release.wait(30)

    thread = _in_thread(hold)
    thread.start()
    assert held.wait(30)
    try:
        counts = rollup.rollup_sign_ins(settle_seconds=0)
        assert counts["busy"] == 1 and counts["ids_integrated"] == 0
    finally:
        release.set()
        thread.join(30)
    assert rollup.catch_up()["batches"] == 1
    assert rolled_up() == direct_aggregation()


@pytest.mark.django_db(transaction=True)
def test_a_row_still_uncommitted_holds_the_watermark_back_until_it_commits(postgres, registry_world):
    """A writer takes an id and commits late; rows with higher ids commit first. The job does not integrate past
    the open transaction's id, and integrates it once it commits."""
    agent = registry_world.agent
    taken, release = threading.Event(), threading.Event()

    def late():
        with transaction.atomic():
            SignIn.objects.create(agent=agent, at=BASE, client_id="late", outcome="success",
                                  granted_scopes=["Policy.Read.All"])
            taken.set()
            release.wait(30)

    thread = _in_thread(late)
    thread.start()
    assert taken.wait(30)
    try:
        SignIn.objects.create(agent=agent, at=BASE + timedelta(minutes=1), client_id="early", outcome="success",
                              granted_scopes=["User.Read.All"])
        rollup.rollup_sign_ins(settle_seconds=0)
        rollup.rollup_sign_ins(settle_seconds=0)
        assert rollup.watermark() == 0  # the late row's transaction began before every sighting so far
    finally:
        release.set()
        thread.join(30)
    rollup.rollup_sign_ins(settle_seconds=0)  # the sighting is settled now
    rollup.catch_up()
    assert rolled_up() == direct_aggregation()
    assert {scope for _agent, _day, scope, _resource in rolled_up()} == {"Policy.Read.All", "User.Read.All"}


# --- the agent page's timeline: sign-ins per day from the per-day totals plus the tail ------------------------------
def _timeline_sign_ins(user, agent, now) -> dict:
    """The timeline's sign-in lane as {day: (count, refused or failed)}, read from what it draws."""
    found = {}
    for name, events in timeline.lanes(user, agent, now - agent_timeline.BACK, now + agent_timeline.AHEAD):
        if name == "Sign-ins":
            for _at, text, count in events:
                day, rest = text.split(": ", 1)
                found[date.fromisoformat(day)] = (count, int(rest.split("(", 1)[1].split(" ", 1)[0]))
    return found


def _direct_timeline(agent, now) -> dict:
    """The same from the log itself: every sign-in of the agent on a UTC day from the window's first day on."""
    first = (now - agent_timeline.BACK).astimezone(UTC).date()
    return {day: (s + f + b, f + b) for (_agent, day), (s, f, b) in direct_day_totals(agent.pk).items()
            if day >= first}


def _random_sign_ins(agents, now, count, seed) -> list[SignIn]:
    randomly = random.Random(seed)
    return [_sign_in(randomly.choice(agents), now - timedelta(minutes=randomly.randrange(70 * 24 * 60)),
                     randomly.choice(OUTCOMES), randomly.sample(SCOPES, randomly.randrange(4)),
                     randomly.choice(RESOURCES)) for _ in range(count)]


@pytest.mark.django_db
def test_the_timeline_counts_equal_a_direct_count_of_the_log_including_the_tail(registry_world, settings):
    """Sign-ins over 70 days (some before the 60-day window), several scopes each: the rolled-up days, then more
    rows past the watermark on the same days and on new ones. The lane counts each sign-in once per UTC day."""
    settings.USAGE_ROLLUP_BATCH = 97
    agents, now = _agents(registry_world), timezone.now()
    agent = registry_world.agent
    SignIn.objects.bulk_create(_random_sign_ins(agents, now, 400, 1))
    assert _timeline_sign_ins(registry_world.owner, agent, now) == _direct_timeline(agent, now)  # the tail alone
    rollup.catch_up()
    assert SignInDay.objects.filter(agent=agent).exists()
    assert _timeline_sign_ins(registry_world.owner, agent, now) == _direct_timeline(agent, now)
    SignIn.objects.bulk_create(_random_sign_ins(agents, now, 150, 2))  # the tail, past the watermark
    assert SignIn.objects.filter(agent=agent, id__gt=rollup.watermark()).exists()
    expected = _direct_timeline(agent, now)
    assert _timeline_sign_ins(registry_world.owner, agent, now) == expected
    assert any(count > 1 for count, _failed in expected.values())


@pytest.mark.django_db
def test_a_batch_committed_between_the_timelines_two_reads_is_not_counted_twice(registry_world, monkeypatch):
    """The watermark is read first; a rollup batch that commits before the second read moves rows from the tail
    into the per-day totals. The tail skips them (the watermark as the second read sees it): still a direct count."""
    agents, now = _agents(registry_world), timezone.now()
    agent = registry_world.agent
    SignIn.objects.bulk_create(_random_sign_ins(agents, now, 200, 3))
    stale = rollup.watermark()  # what the first read saw
    rollup.catch_up()  # the batch that commits in between
    assert rollup.watermark() > stale
    monkeypatch.setattr(selectors, "watermark", lambda: stale)
    assert _timeline_sign_ins(registry_world.owner, agent, now) == _direct_timeline(agent, now)


@pytest.mark.django_db
def test_the_timelines_sign_in_lane_is_two_queries_whatever_the_log(registry_world):
    agents, now = _agents(registry_world), timezone.now()
    agent = registry_world.agent
    first, last = (now - agent_timeline.BACK).date(), (now + agent_timeline.AHEAD).date()
    with CaptureQueriesContext(connection) as few:
        selectors.sign_ins_per_day(agent.pk, first, last)
    SignIn.objects.bulk_create(_random_sign_ins(agents, now, 300, 4))
    rollup.catch_up()
    SignIn.objects.bulk_create(_random_sign_ins(agents, now, 100, 5))
    with CaptureQueriesContext(connection) as many:
        found = selectors.sign_ins_per_day(agent.pk, first, last)
    assert found and len(few.captured_queries) == len(many.captured_queries) == 2


@pytest.mark.django_db
def test_a_batch_turns_jit_off_for_its_own_statement_only(postgres, registry_world):
    """Over the log's day partitions the batch's plan set off JIT compilation (about 20 s a batch); the batch turns
    it off and gives the transaction its setting back."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = on")
    SignIn.objects.bulk_create([_sign_in(registry_world.agent, BASE, "success", ["User.Read.All"], "")])
    assert rollup.catch_up()["batches"] == 1
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "on"
    assert rolled_up_days() == direct_day_totals()
