"""Jobs: registry, schedule in code, JobRun records, the command, and a real Celery worker."""

from __future__ import annotations

import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from portal import jobs
from portal.celery import app as celery_app
from portal.models import AuditEvent, JobRun
from portal.schedules import JOB_SCHEDULES


def test_every_scheduled_job_is_registered_and_every_job_is_scheduled():
    assert set(JOB_SCHEDULES) == set(jobs.REGISTRY)
    assert celery_app.conf.beat_schedule["verify_audit_chain"]["task"] == "portal.run_job"
    assert celery_app.conf.beat_schedule["verify_audit_chain"]["args"] == ("verify_audit_chain", "schedule")


@pytest.mark.django_db
def test_r23_verify_audit_chain_job_records_a_jobrun(world):
    run = jobs.job_execute("verify_audit_chain")
    assert run.status == "succeeded" and run.trigger == "command"
    assert run.counts["events_checked"] == AuditEvent.objects.count() and run.counts["pending"] == 0
    assert run.finished_at >= run.started_at


@pytest.mark.django_db
def test_r23_verify_audit_chain_job_fails_naming_the_tampered_event(world):
    jobs.job_execute("sequence_audit_log")  # the event is in the signed log before it is tampered with
    victim = AuditEvent.objects.order_by("id")[1]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {AuditEvent._meta.db_table} SET action = 'x' WHERE id = %s", [victim.pk])
    with pytest.raises(CommandError, match="verify_audit_chain"):
        call_command("run_governance_jobs", "--job", "verify_audit_chain")
    run = JobRun.objects.get(job="verify_audit_chain")
    assert run.status == "failed" and f"#{victim.pk}" in run.error
    assert run.counts["events_checked"] == AuditEvent.objects.count()


@pytest.mark.django_db
def test_a_crashing_job_is_recorded_as_failed():
    jobs.register("explodes", "test job")(lambda: 1 / 0)
    try:
        run = jobs.job_execute("explodes")
    finally:
        jobs.REGISTRY.pop("explodes")
    assert run.status == "failed" and "ZeroDivisionError" in run.error and run.finished_at


@pytest.mark.django_db
def test_run_now_is_for_owners_and_queues_a_run(world):
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        jobs.job_enqueue(actor=world.contributor, name="verify_audit_chain")
    run = jobs.job_enqueue(actor=world.owner, name="verify_audit_chain")
    assert (run.status, run.trigger, run.triggered_by) == ("queued", "manual", world.owner)
    assert AuditEvent.objects.filter(action="job.enqueue", actor=world.owner).count() == 1


@pytest.mark.django_db
def test_jobs_page_shows_last_and_next_run(client, world):
    jobs.job_execute("verify_audit_chain")
    client.force_login(world.owner)
    body = client.get("/jobs/").content.decode()
    assert 'data-job="verify_audit_chain"' in body and "Succeeded" in body and "(in " in body


@pytest.mark.django_db(transaction=True)
def test_run_now_executes_on_a_real_celery_worker_over_redis(redis_url, world):
    """"Run now" → Redis → a real worker thread runs verify_audit_chain and records the JobRun."""
    from celery.contrib.testing.worker import start_worker

    assert celery_app.conf.broker_url == redis_url
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        queued = jobs.job_enqueue(actor=world.owner, name="verify_audit_chain")  # sent on commit
        deadline = time.monotonic() + 30
        run = queued
        while time.monotonic() < deadline:
            run = JobRun.objects.get(pk=queued.pk)
            if run.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
    assert run.status == "succeeded", run.error
    assert run.counts["events_checked"] == AuditEvent.objects.count()  # including the job.enqueue event
    assert run.worker and run.finished_at


@pytest.mark.django_db
def test_a_run_whose_worker_was_lost_is_marked_failed_by_the_next_run():
    from datetime import timedelta

    from django.utils import timezone

    lost = JobRun.objects.create(job="verify_audit_chain", trigger="schedule", status="running",
                                 started_at=timezone.now() - timedelta(hours=7))
    recent = JobRun.objects.create(job="verify_audit_chain", trigger="schedule", status="running",
                                   started_at=timezone.now() - timedelta(minutes=5))  # may still be running
    jobs.job_execute("verify_audit_chain")
    lost.refresh_from_db()
    recent.refresh_from_db()
    assert lost.status == "failed" and "lost" in lost.error and lost.finished_at
    assert recent.status == "running"
