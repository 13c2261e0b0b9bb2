"""Celery tasks of governance: executing a run (``governance.runs.services.run_execute``) on a worker."""

from __future__ import annotations

import uuid

from celery import shared_task

from portal import audit


@shared_task(name="governance.execute_run", ignore_result=True)
def execute_run_task(run_id: int) -> None:
    from governance.runs import services as runs

    token = audit.current_request_id.set(f"run-{uuid.uuid4().hex[:16]}")
    try:
        runs.run_execute(run_id)
    finally:
        audit.current_request_id.reset(token)
