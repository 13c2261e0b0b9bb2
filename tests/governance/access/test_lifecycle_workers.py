"""R18 with real workers: expiry runs that overlap or die part-way end each assignment exactly once.

The data is made through the services (workspace, agents, package); the many due ``Assignment`` rows are
bulk-created as test data. Two tests need PostgreSQL (row locks, ``SKIP LOCKED``) and Redis (the broker): they
fail under ``REQUIRE_SERVICES=1`` and skip otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from agents import registry
from governance.access import services as access_packages
from governance.access.choices import ApproverKind, AssignmentStatus, DurationKind
from governance.access.models import Assignment
from portal import audit_log, jobs
from portal.celery import app as celery_app
from portal.models import AuditEvent, JobRun, Notification, Permission
from portal.tasks import run_job_task
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace

REPO = Path(__file__).resolve().parents[3]
FINISHED = ("succeeded", "failed")


def _setup(agents: int, packages: int):
    """A workspace, ``agents`` agents (sponsor ``sponsor``) and ``packages`` packages that need no approval."""
    owner, owner_b, sponsor = (UserFactory(username=n) for n in ("owner", "owner_b", "sponsor"))
    workspace = make_workspace("alpha", owners=[owner, owner_b])
    blueprint = make_blueprint("ExpiryAgent", permissions=("User.Read.All",))
    provisioned = registry.agents_provision(actor=None, workspace=workspace, specs=[
        agent_spec(blueprint, f"expiry-agent-{i:04d}", sponsors=[sponsor], owners=[owner_b]) for i in range(agents)])
    permission = Permission.objects.filter(kind="application", name="SecurityIncident.Read.All")
    made = [access_packages.package_save(
        actor=None, workspace=workspace, name=f"Package {i:03d}", permissions=permission,
        policy={"approver_kind": ApproverKind.NONE, "duration_kind": DurationKind.DAYS, "duration_value": 10,
                "justification_required": False}) for i in range(packages)]
    return workspace, owner, sponsor, [p.agent for p in provisioned], made


def _assignments(agents, packages, requester, *, due: int, later: int = 0) -> list[int]:
    """``due`` active assignments that ended in the last hours and ``later`` that end in a week; the due pks."""
    now = timezone.now()
    pairs = [(p, a) for p in packages for a in agents]
    assert len(pairs) >= due + later
    rows = []
    for i, (package, agent) in enumerate(pairs[:due + later]):
        ends = now - timedelta(minutes=1 + i % 240) if i < due else now + timedelta(days=7)
        rows.append(Assignment(package=package, agent=agent, status=AssignmentStatus.ACTIVE, requested_by=requester,
                               requested_at=now - timedelta(days=3), request_expires_at=now + timedelta(days=4),
                               starts_at=now - timedelta(days=2), expires_at=ends))
    created = Assignment.objects.bulk_create(rows, batch_size=1000)
    return [a.pk for a in created[:due]]


def _expired(pks) -> int:
    return Assignment.objects.filter(pk__in=pks, status=AssignmentStatus.EXPIRED).count()


def _assert_expired_exactly_once(due_pks) -> None:
    assert _expired(due_pks) == len(due_pks)
    per_target = dict(AuditEvent.objects.filter(action="assignment.expire", target_type="access.assignment")
                      .values_list("target_id").annotate(n=Count("id")).values_list("target_id", "n"))
    assert set(per_target) == {str(pk) for pk in due_pks}
    assert set(per_target.values()) == {1}, "an assignment was expired (and audited) twice"


def _wait_for(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


@pytest.mark.django_db(transaction=True)
def test_r18_two_concurrent_expiry_runs_expire_each_assignment_exactly_once(postgres, redis_url, settings):
    """A Celery worker and the test thread run expire_assignments at once: SKIP LOCKED splits the rows."""
    from celery.contrib.testing.worker import start_worker

    settings.JOB_BATCH_SIZE, settings.JOB_BATCH_PAUSE_SECONDS = 25, 0.05
    _workspace, owner, _sponsor, agents, packages = _setup(agents=50, packages=13)
    due = _assignments(agents, packages, owner, due=600, later=40)
    assert celery_app.conf.broker_url == redis_url
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
        run_job_task.delay("expire_assignments", "manual")
        # Start the second run once the worker's run is under way, so the two really overlap.
        _wait_for(lambda: _expired(due) > 0, 30, "the worker's first batch")
        here = jobs.job_execute("expire_assignments")
        worker = _wait_for(lambda: JobRun.objects.filter(job="expire_assignments", trigger="manual",
                                                         status__in=FINISHED).first(), 60, "the worker's run")
    assert (here.status, worker.status) == ("succeeded", "succeeded"), (here.error, worker.error)
    assert here.worker and worker.worker
    assert here.counts["expired"] > 0 and worker.counts["expired"] > 0, (here.counts, worker.counts)
    assert here.counts["expired"] + worker.counts["expired"] == len(due)
    _assert_expired_exactly_once(due)
    assert Assignment.objects.filter(status=AssignmentStatus.ACTIVE).count() == 40  # the ones not due yet
    assert audit_log.verify_log().ok


def _test_database_url() -> str:
    db = connection.settings_dict
    user = quote(db.get("USER") or "postgres", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _forget_unacked(task_id: str, redis_url: str) -> None:
    """Celery acks a message before running it (acks_late is off), so the killed run leaves nothing behind; should
    that change, drop the unacked message so nothing replays it after the visibility timeout."""
    import redis

    client = redis.Redis.from_url(redis_url)
    for tag, payload in client.hgetall("unacked").items():
        try:
            message = json.loads(payload)[0]
        except (ValueError, IndexError, KeyError):
            continue
        if message.get("headers", {}).get("id") == task_id:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)


@pytest.mark.django_db(transaction=True)
def test_r18_a_run_killed_part_way_completes_on_the_next_run_and_repeats_nothing(postgres, redis_url, tmp_path):
    """A real worker process is SIGKILLed between batches; the next run ends the rest and repeats nothing."""
    _workspace, owner, _sponsor, agents, packages = _setup(agents=50, packages=12)
    due = _assignments(agents, packages, owner, due=600)
    queue = f"lifecycle-test-{uuid.uuid4().hex[:12]}"  # private: this worker takes no one else's tasks
    env = {**os.environ, "DATABASE_URL": _test_database_url(), "REDIS_URL": redis_url, "JOB_BATCH_SIZE": "100",
           "JOB_BATCH_PAUSE_SECONDS": "0.5", "DJANGO_SETTINGS_MODULE": "portal.settings"}
    celery = Path(sys.executable).with_name("celery")
    log = tmp_path / "worker.log"
    celery_app.control.purge()
    task_id = ""
    with log.open("wb") as out:
        worker = subprocess.Popen([str(celery), "-A", "portal", "worker", "--pool=solo", "--loglevel=INFO",
                                   "-Q", queue, "--without-heartbeat", "--without-mingle", "--without-gossip"],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            task_id = run_job_task.apply_async(("expire_assignments", "manual"), queue=queue).id

            def part_way():
                assert worker.poll() is None, log.read_text()
                done = _expired(due)
                return 100 <= done < len(due)

            _wait_for(part_way, 90, "the worker to finish its first batch")
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=30)
            if task_id:
                _forget_unacked(task_id, redis_url)
    assert worker.returncode == -signal.SIGKILL
    killed = JobRun.objects.get(job="expire_assignments", trigger="manual")
    assert killed.status == "running" and killed.finished_at is None  # it died: nobody recorded its end
    part = _expired(due)
    assert 100 <= part < len(due) and part % 100 == 0, part  # whole batches only: each committed on its own
    assert AuditEvent.objects.filter(action="assignment.expire").count() == part

    rest = jobs.job_execute("expire_assignments")
    assert rest.status == "succeeded", rest.error
    assert rest.counts["expired"] == len(due) - part
    _assert_expired_exactly_once(due)
    assert audit_log.verify_log().ok


@pytest.mark.django_db
def test_r18_expiry_reminders_go_once_per_reminder_day_and_a_second_run_sends_nothing(settings):
    """Sponsors (not owners, not deactivated sponsors) hear 14 days and 1 day before the end, once each."""
    settings.EXPIRY_REMINDER_DAYS = [14, 1]
    owner, owner_b, sponsor, sponsor_b, gone = (UserFactory(username=n) for n in
                                                ("owner", "owner_b", "sponsor", "sponsor_b", "gone"))
    workspace = make_workspace("alpha", owners=[owner, owner_b])
    blueprint = make_blueprint("ExpiryAgent", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        blueprint, "reminded-agent", sponsors=[sponsor, sponsor_b, gone], owners=[owner_b])).agent
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    package = access_packages.package_save(
        actor=owner, workspace=workspace, name="Ten days", permissions=Permission.objects.filter(
            kind="application", name="SecurityIncident.Read.All"),
        policy={"approver_kind": ApproverKind.NONE, "duration_kind": DurationKind.DAYS, "duration_value": 10})
    later = access_packages.package_save(
        actor=owner, workspace=workspace, name="Thirty days", permissions=Permission.objects.filter(
            kind="application", name="ThreatHunting.Read.All"),
        policy={"approver_kind": ApproverKind.NONE, "duration_kind": DurationKind.DAYS, "duration_value": 30})
    assignment = access_packages.assignment_request(actor=sponsor, package=package, agent=agent, justification="x")
    access_packages.assignment_request(actor=sponsor, package=later, agent=agent, justification="x")
    assert assignment.status == AssignmentStatus.ACTIVE

    def reminders(user):
        return list(Notification.objects.filter(recipient=user, subject__contains=" ends in ")
                    .order_by("id").values_list("subject", flat=True))

    first = jobs.job_execute("send_expiry_reminders")
    assert first.counts == {"reminders": 1}
    for person in (sponsor, sponsor_b):
        assert reminders(person) == ["Ten days for reminded-agent ends in 9 day(s)"]  # the real time left
    assert jobs.job_execute("send_expiry_reminders").counts == {"reminders": 0}
    assert len(reminders(sponsor)) == 1

    # Nine days later (the assignment's clock moved instead of the test's): the 1-day reminder, once.
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(starts_at=now - timedelta(days=9),
                                                       expires_at=now + timedelta(hours=20))
    assert jobs.job_execute("send_expiry_reminders").counts == {"reminders": 1}
    assert jobs.job_execute("send_expiry_reminders").counts == {"reminders": 0}
    for person in (sponsor, sponsor_b):
        assert reminders(person) == ["Ten days for reminded-agent ends in 9 day(s)",
                                     "Ten days for reminded-agent ends in 19 hour(s)"]
    assert reminders(owner) == reminders(owner_b) == reminders(gone) == []
    assignment.refresh_from_db()
    assert sorted(assignment.reminded_days) == [1, 14]
    assert AuditEvent.objects.filter(action="assignment.reminder", target_id=str(assignment.pk)).count() == 2
