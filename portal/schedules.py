"""When each governance job runs (docs/design.md, Scheduled jobs). Declared in code; Celery beat reads it
through ``portal.celery``.

Kept free of model imports so the Celery app can load it before Django is set up. A job appears here only
once it is implemented and registered in ``portal.jobs`` (a test checks both lists agree).
"""

import os
from datetime import UTC, datetime, timedelta

from celery.schedules import crontab, schedule

#: How often beat looks for scheduled agents that are due (each agent's own period comes from its blueprint's
#: triggers; this is only the scheduler's resolution).
AGENT_SCHEDULER_SECONDS = int(os.environ.get("AGENT_SCHEDULER_SECONDS", "60"))

#: How often beat sends the heartbeat task (``portal.scheduler_heartbeat``); beat counts as late past twice this.
SCHEDULER_HEARTBEAT_SECONDS = int(os.environ.get("SCHEDULER_HEARTBEAT_SECONDS", "60"))
HEARTBEAT_SCHEDULE = schedule(run_every=timedelta(seconds=SCHEDULER_HEARTBEAT_SECONDS))

#: How often the sequencer integrates committed audit events into the log's Merkle tree (docs/design.md, R23).
AUDIT_SEQUENCE_SECONDS = int(os.environ.get("AUDIT_SEQUENCE_SECONDS", "60"))

JOB_SCHEDULES = {
    "verify_audit_chain": crontab(minute=30, hour=3),
    "sequence_audit_log": schedule(run_every=timedelta(seconds=AUDIT_SEQUENCE_SECONDS)),
    "expire_approval_requests": crontab(minute=0),
    "expire_assignments": crontab(),  # every minute
    "send_expiry_reminders": crontab(minute=0, hour=8),
    "expire_agents": crontab(minute="*/5"),
    "sweep_orphans": crontab(minute=15, hour=2),
    "attest_sponsorships": crontab(minute=45, hour=1),  # before the sweep: lapsed sponsorships are then seen
    "run_access_reviews": crontab(minute=5),
    "evaluate_risk": crontab(minute="*/5"),
    "run_scheduled_agents": schedule(run_every=timedelta(seconds=AGENT_SCHEDULER_SECONDS)),
    "expire_runs": crontab(),  # every minute
    "rollup_sign_ins": crontab(),  # every minute: the usage rollup (docs/design.md, "Usage")
    "rotate_signing_keys": crontab(minute=20, hour=1),  # daily (docs/oauth.md, "Signing keys")
    "maintain_sign_in_partitions": crontab(minute=40, hour=0),  # daily: the sign-in log's days ahead and retention
    "expire_sign_in_exports": crontab(minute=10),  # hourly: export files nobody downloaded in time
}


def schedule_period(entry: schedule | crontab) -> timedelta:
    """How long one period of a schedule lasts: its interval, or the gap between two consecutive crontab times
    (from a fixed reference, so the answer never depends on the clock). A job is late past twice this."""
    if isinstance(entry, crontab):
        reference = datetime(2030, 1, 7, tzinfo=UTC)  # a Monday at midnight
        first = _next_time(entry, reference)
        return _next_time(entry, first) - first
    return entry.run_every


def _next_time(entry: crontab, after: datetime) -> datetime:
    last, delta, _now = entry.remaining_delta(after)
    return last + delta
