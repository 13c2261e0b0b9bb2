"""Celery tasks of the sign-in app: thin, idempotent, over ``governance.signin.exports``."""

from __future__ import annotations

import uuid

from celery import shared_task

from governance.signin import exports
from portal import audit


@shared_task(name="signin.run_export")
def run_export(export_id: int) -> str:
    """Write a queued sign-in export's file; safe to deliver twice."""
    token = audit.current_request_id.set(f"export-{uuid.uuid4().hex[:16]}")
    try:
        return exports.signin_export_run(export_id).status
    finally:
        audit.current_request_id.reset(token)
