"""Scheduled governance jobs (docs/design.md, Scheduled jobs): the registry, the runner that records a
``JobRun``, and "Run now".

A job is a plain function returning a dict of counts; it does its own batching and transactions and is
idempotent. Higher layers register theirs from their ``AppConfig.ready()`` (imports flow downward only).
The same ``job_execute`` runs for beat, the "Run now" button and ``manage.py run_governance_jobs``.
"""

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from portal import audit, celery, rbac
from portal.choices import JobStatus, JobTrigger
from portal.models import JobRun, User
from portal.schedules import JOB_SCHEDULES


class JobFailed(Exception):
    """Raised by a job that ran but found a problem; its counts are still recorded."""

    def __init__(self, message: str, counts: dict | None = None):
        super().__init__(message)
        self.counts = counts or {}


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    func: Callable[[], dict]

    @property
    def schedule(self):
        return JOB_SCHEDULES.get(self.name)

    def next_run_after(self, last_run_at: datetime | None) -> datetime | None:
        if self.schedule is None:
            return None
        now = timezone.now()
        return now + self.schedule.remaining_estimate(last_run_at or now)


REGISTRY: dict[str, Job] = {}


def register(name: str, description: str) -> Callable[[Callable[[], dict]], Callable[[], dict]]:
    def decorator(func: Callable[[], dict]) -> Callable[[], dict]:
        REGISTRY[name] = Job(name=name, description=description, func=func)
        return func

    return decorator


def get_job(name: str) -> Job:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"Unknown job '{name}'. Known jobs: {known}.") from None


@transaction.atomic
def job_enqueue(*, actor: User, name: str) -> JobRun:
    """"Run now": queue the job on a worker (owners only); the task is sent once this transaction commits."""
    rbac.require(rbac.can_view_jobs(actor), "Only workspace owners can run jobs.")
    job = get_job(name)
    run = JobRun.objects.create(job=job.name, trigger=JobTrigger.MANUAL, status=JobStatus.QUEUED,
                                triggered_by=actor, started_at=timezone.now())
    audit.record(actor=actor, action="job.enqueue", target=run, after={"job": job.name})

    transaction.on_commit(lambda: celery.enqueue("portal.run_job", job.name, JobTrigger.MANUAL, run.pk))
    return run


def job_execute(name: str, *, trigger: str = JobTrigger.COMMAND, job_run_id: int | None = None,
                triggered_by: User | None = None) -> JobRun:
    """Run a job now in this process and record its ``JobRun`` (start, end, counts, error)."""
    job = get_job(name)
    _fail_lost_runs(job.name)
    if job_run_id is not None:
        run = JobRun.objects.get(pk=job_run_id)
        run.status, run.started_at = JobStatus.RUNNING, timezone.now()
    else:
        run = JobRun(job=job.name, trigger=trigger, triggered_by=triggered_by, started_at=timezone.now())
    run.worker = socket.gethostname()
    run.save()
    try:
        run.counts = job.func() or {}
        run.status = JobStatus.SUCCEEDED
    except JobFailed as failure:
        run.counts, run.status, run.error = failure.counts, JobStatus.FAILED, str(failure)
    except Exception:  # a crashed job is recorded, never silently lost
        run.status, run.error = JobStatus.FAILED, traceback.format_exc(limit=5)
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "counts", "error", "finished_at"])
    return run


LOST_AFTER = timedelta(hours=6)


def _fail_lost_runs(name: str) -> int:
    """A worker killed mid-run leaves its JobRun "running" forever; after LOST_AFTER it is marked failed."""
    cutoff = timezone.now() - LOST_AFTER
    return JobRun.objects.filter(job=name, status=JobStatus.RUNNING, started_at__lt=cutoff).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), error="The worker was lost before the run finished.")


@register("verify_audit_chain", "Recompute the audit trail's hash chain and report the first tampered event.")
def verify_audit_chain() -> dict:
    check = audit.verify_chain()
    counts = {"events_checked": check.checked}
    if not check.ok:
        raise JobFailed(f"Audit event #{check.broken_event_id}: {check.reason}.", counts)
    return counts
