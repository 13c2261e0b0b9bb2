"""Celery tasks: thin wrappers over ``portal.jobs``."""

from __future__ import annotations

import uuid

from celery import shared_task

from portal import audit, jobs
from portal.choices import JobTrigger


@shared_task(name="portal.run_job")
def run_job_task(job_name: str, trigger: str = JobTrigger.SCHEDULE, job_run_id: int | None = None) -> int:
    token = audit.current_request_id.set(f"job-{uuid.uuid4().hex[:16]}")
    try:
        return jobs.job_execute(job_name, trigger=trigger, job_run_id=job_run_id).pk
    finally:
        audit.current_request_id.reset(token)


@shared_task(name="portal.scheduler_heartbeat")
def scheduler_heartbeat_task() -> None:
    """Beat sends this every ``SCHEDULER_HEARTBEAT_SECONDS``; the worker that runs it records beat's last tick."""
    jobs.scheduler_heartbeat_record()
