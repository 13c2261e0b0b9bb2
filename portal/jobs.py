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

from portal import audit, audit_log, celery, rbac, selectors
from portal.choices import JobStatus, JobTrigger
from portal.models import JobRun, SchedulerHeartbeat, User
from portal.schedules import HEARTBEAT_SCHEDULE, JOB_SCHEDULES, schedule_period


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

    @property
    def period(self) -> timedelta | None:
        return schedule_period(self.schedule) if self.schedule is not None else None

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

#: A job, or beat itself, is late when its last success is older than this many periods (docs/design.md, Faults).
LATE_AFTER_PERIODS = 2


def scheduler_heartbeat_record(*, worker: str | None = None) -> SchedulerHeartbeat:
    """Record that beat's heartbeat reached a worker now (one row, rewritten): beat, broker and a worker are up."""
    heartbeat, _created = SchedulerHeartbeat.objects.update_or_create(
        name="beat", defaults={"ticked_at": timezone.now(), "worker": worker or socket.gethostname()})
    return heartbeat


@dataclass(frozen=True)
class JobHealth:
    """One job on the Jobs page and in ``/healthz``: when it last succeeded, and whether that is too long ago."""

    job: Job
    last_succeeded: datetime | None
    late: bool


@dataclass(frozen=True)
class SchedulerHealth:
    """Beat's last tick and every job's last success, each "late" past ``LATE_AFTER_PERIODS`` periods.

    Nothing is late before its first tick or success: a fresh installation is not an outage. Once beat has ticked,
    a stopped beat, broker or set of workers shows within two heartbeat periods."""

    beat_last_tick: datetime | None
    beat_late: bool
    jobs: list[JobHealth]

    @property
    def late(self) -> bool:
        return self.beat_late or any(job.late for job in self.jobs)

    @property
    def late_jobs(self) -> list[str]:
        return [health.job.name for health in self.jobs if health.late]


def _is_late(last: datetime | None, period: timedelta | None, now: datetime) -> bool:
    return last is not None and period is not None and now - last > LATE_AFTER_PERIODS * period


def scheduler_health(*, now: datetime | None = None) -> SchedulerHealth:
    """Read beat's heartbeat and each registered job's last success (one query each, on the job index)."""
    now = now or timezone.now()
    heartbeat = SchedulerHeartbeat.objects.filter(name="beat").values_list("ticked_at", flat=True).first()
    successes = selectors.last_success_per_job(sorted(REGISTRY))
    jobs = [JobHealth(job=job, last_succeeded=successes.get(job.name),
                      late=_is_late(successes.get(job.name), job.period, now))
            for job in sorted(REGISTRY.values(), key=lambda j: j.name)]
    return SchedulerHealth(beat_last_tick=heartbeat,
                           beat_late=_is_late(heartbeat, schedule_period(HEARTBEAT_SCHEDULE), now), jobs=jobs)


def _fail_lost_runs(name: str) -> int:
    """A worker killed mid-run leaves its JobRun "running" forever; after LOST_AFTER it is marked failed."""
    cutoff = timezone.now() - LOST_AFTER
    return JobRun.objects.filter(job=name, status=JobStatus.RUNNING, started_at__lt=cutoff).update(
        status=JobStatus.FAILED, finished_at=timezone.now(), error="The worker was lost before the run finished.")


@register("verify_audit_chain", "Integrate pending audit events, then recompute the audit log's Merkle tree and "
                               "check every signed tree head; report the first tampered event.")
def verify_audit_chain() -> dict:
    audit_log.sequence()
    check = audit_log.verify_log()
    counts = {"events_checked": check.events_checked, "tree_heads_checked": check.heads_checked,
              "pending": check.pending}
    if not check.ok:
        raise JobFailed(check.first_problem, counts)
    return counts


@register("sequence_audit_log", "Give committed audit events their place in the audit log's Merkle tree and sign "
                                "a new tree head.")
def sequence_audit_log() -> dict:
    result = audit_log.sequence()
    return {"integrated": result.integrated, "batches": result.batches, "tree_size": result.tree_size,
            "busy": int(result.busy)}
