"""Beat and the workers down (docs/design.md, Faults): the Jobs page and ``/healthz`` say "late" past twice a
period, and when the scheduler comes back every job catches up once.

Time travels through ``Clock``: it replaces ``django.utils.timezone.now`` (every service reads the time through it)
and the Celery app's clock, which beat's schedule entries read.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery.beat import Scheduler
from django.utils import timezone

from governance.access import services as access
from governance.access.models import Assignment
from governance.reviews.campaigns import review_create
from portal import jobs
from portal.celery import app as celery_app
from portal.models import AuditEvent, JobRun, Permission
from portal.schedules import HEARTBEAT_SCHEDULE, JOB_SCHEDULES, schedule_period
from portal.tasks import run_job_task, scheduler_heartbeat_task
from tests.faults.conftest import record_figure

pytestmark = pytest.mark.django_db


class Clock:
    """The time every service and beat's schedule see; ``advance`` moves it forward."""

    def __init__(self, monkeypatch):
        self.current = timezone.now()
        monkeypatch.setattr(timezone, "now", lambda: self.current)
        monkeypatch.setattr(celery_app, "now", lambda: self.current.astimezone(celery_app.timezone))

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@pytest.fixture
def clock(monkeypatch) -> Clock:
    return Clock(monkeypatch)


class RecordingBeat(Scheduler):
    """Celery beat's own scheduler (in memory, as a beat started with an empty schedule file) that records what
    it sends instead of publishing it, so the test plays the worker."""

    producer = None  # no broker connection: nothing is published

    def __init__(self, *args, **kwargs):
        self.sent: list[tuple[str, tuple]] = []
        super().__init__(*args, **kwargs)

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        entry = self.reserve(entry) if advance else entry
        self.sent.append((entry.task, tuple(entry.args)))

    def run_until_idle(self) -> list[tuple[str, tuple]]:
        """Tick as beat's loop does until nothing is due; returns what this pass sent."""
        start = len(self.sent)
        for _ in range(200):
            if self.tick() > 0:
                break
        return self.sent[start:]


def deliver(messages: list[tuple[str, tuple]]) -> None:
    """Run each sent task as a worker would."""
    for task, args in messages:
        if task == "portal.scheduler_heartbeat":
            scheduler_heartbeat_task()
        else:
            assert task == "portal.run_job"
            run = JobRun.objects.get(pk=run_job_task(*args))
            assert run.status == "succeeded", (run.job, run.error)


def late_cells(body: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-job="([a-z_]+)">.*?<td class="small" data-late="(true|false)">', body, re.S))


def test_schedule_periods_come_from_the_schedules_in_code():
    assert schedule_period(JOB_SCHEDULES["expire_assignments"]) == timedelta(minutes=1)
    assert schedule_period(JOB_SCHEDULES["expire_agents"]) == timedelta(minutes=5)
    assert schedule_period(JOB_SCHEDULES["run_access_reviews"]) == timedelta(hours=1)
    assert schedule_period(JOB_SCHEDULES["verify_audit_chain"]) == timedelta(days=1)
    assert schedule_period(HEARTBEAT_SCHEDULE) == timedelta(seconds=60)
    # a run still queued when the next is sent expires, so workers coming back run each job once, not once a period
    entry = celery_app.conf.beat_schedule["run_access_reviews"]
    assert entry["options"]["expires"] == 3600
    assert celery_app.conf.beat_schedule["scheduler_heartbeat"]["options"]["expires"] == 60


def test_a_job_is_late_only_past_twice_its_period(clock):
    jobs.job_execute("expire_assignments")
    scheduler_heartbeat_task()
    clock.advance(timedelta(minutes=2))  # exactly two periods: not yet
    health = jobs.scheduler_health()
    assert not health.beat_late and "expire_assignments" not in health.late_jobs
    clock.advance(timedelta(seconds=1))
    health = jobs.scheduler_health()
    assert health.beat_late and "expire_assignments" in health.late_jobs
    assert "verify_audit_chain" not in health.late_jobs  # never succeeded: nothing to be late from


def test_healthz_before_beat_ever_ticked_is_ok(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["checks"]["scheduler"] == "ok"
    assert body["scheduler"]["beat_last_tick"] is None


def test_beat_stopped_for_three_periods_shows_late_then_every_job_catches_up_once(client, registry_world, clock):
    w = registry_world
    package = access.package_save(
        actor=w.owner, workspace=w.alpha, name="Responder", policy={"approver_kind": "none"},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    assignment = access.assignment_request(actor=w.owner, package=package, agent=w.agent, justification="x")
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=clock.current + timedelta(hours=2))
    campaign = review_create(actor=w.owner, workspace=w.alpha, name="Quarterly", scope_kind="packages",
                             packages=[package], reviewer_kind="sponsors", duration_days=7,
                             starts_at=clock.current + timedelta(days=1))
    assert not campaign.instances.exists()

    # Beat and a worker are running: every job and the heartbeat have just succeeded.
    beat = RecordingBeat(app=celery_app)
    deliver([("portal.scheduler_heartbeat", ())] + [("portal.run_job", (name, "schedule")) for name in JOB_SCHEDULES])
    assert beat.run_until_idle() == []  # nothing is due yet
    client.force_login(w.owner)
    assert set(late_cells(client.get("/jobs/").content.decode()).values()) == {"false"}
    assert client.get("/healthz").json()["status"] == "ok"

    # Beat stops for three periods of the slowest job (a day), and a little more.
    clock.advance(timedelta(days=3, minutes=5))
    page = client.get("/jobs/").content.decode()
    assert late_cells(page) == {name: "true" for name in JOB_SCHEDULES}
    assert "data-beat-late" in page
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 200  # degraded, not unavailable: the web node still serves
    assert body["status"] == "degraded" and "scheduler" in body["failing"]
    assert body["checks"]["scheduler"] == "late" and body["scheduler"]["beat_late"] is True
    assert all(job["late"] for job in body["scheduler"]["jobs"].values())
    assert Assignment.objects.get(pk=assignment.pk).status == "active"  # no job has run meanwhile

    # Beat comes back: it sends each job once (not once per missed period), and a worker runs them.
    started = time.monotonic()
    sent = beat.run_until_idle()
    assert sorted(args[0] for task, args in sent if task == "portal.run_job") == sorted(JOB_SCHEDULES)
    assert [task for task, _args in sent].count("portal.scheduler_heartbeat") == 1
    deliver(sent)
    caught_up = time.monotonic() - started
    deliver(sent)  # the same messages again, as a redelivery after a worker restart would: nothing happens twice

    assert Assignment.objects.get(pk=assignment.pk).status == "expired"
    assert AuditEvent.objects.filter(action="assignment.expire", target_id=str(assignment.pk)).count() == 1
    assert campaign.instances.count() == 1
    assert AuditEvent.objects.filter(action="review.open").count() == 1
    assert set(late_cells(client.get("/jobs/").content.decode()).values()) == {"false"}
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok", response.json()
    assert response.json()["checks"]["scheduler"] == "ok"
    per_job = Counter(args[0] for task, args in sent if task == "portal.run_job")
    record_figure({"scenario": "fault_scheduler_down", "n": len(sent), "seconds": round(caught_up, 3),
                   "periods_missed": 3, "late_jobs": len(late_cells(page)), "runs_sent_per_job": max(per_job.values()),
                   "assignment_expiries": AuditEvent.objects.filter(action="assignment.expire").count(),
                   "reviews_opened": campaign.instances.count()})


def test_healthz_reads_the_scheduler_in_the_same_queries_however_long_the_history(client, clock):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/healthz").status_code == 200
        return len(captured)

    jobs.job_execute("expire_assignments")
    few = queries()
    JobRun.objects.bulk_create([JobRun(job="expire_assignments", trigger="schedule", status="succeeded",
                                       started_at=clock.current, finished_at=clock.current) for _ in range(500)])
    assert queries() == few <= 2 + len(jobs.REGISTRY)


@pytest.mark.django_db(transaction=True)
def test_beat_heartbeat_sent_as_beat_sends_it_reaches_a_real_worker_over_redis(redis_url):
    """The heartbeat entry, published the way beat publishes it, is recorded by a real worker: beat is not late."""
    from celery.contrib.testing.worker import start_worker

    from portal.models import SchedulerHeartbeat

    entry = celery_app.conf.beat_schedule["scheduler_heartbeat"]
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        celery_app.send_task(entry["task"], **entry["options"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not SchedulerHeartbeat.objects.exists():
            time.sleep(0.2)
    health = jobs.scheduler_health()
    assert health.beat_last_tick is not None and not health.beat_late
