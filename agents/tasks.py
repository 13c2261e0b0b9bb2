"""Celery tasks of the agent registry: thin wrappers over the services."""

from __future__ import annotations

import uuid

from celery import shared_task

from agents import bulk
from portal import audit


@shared_task(name="agents.run_bulk_job")
def run_bulk_job(job_id: int, key: str) -> str:
    """Run a queued bulk provisioning job (R9); safe to deliver twice. ``key`` encrypts the new secrets."""
    token = audit.current_request_id.set(f"bulk-{uuid.uuid4().hex[:16]}")
    try:
        return bulk.bulk_job_run(job_id, key).status
    finally:
        audit.current_request_id.reset(token)
