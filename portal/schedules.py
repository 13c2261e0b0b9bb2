"""When each governance job runs (docs/design.md, Scheduled jobs). Declared in code; Celery beat reads it
through ``portal.celery``.

Kept free of model imports so the Celery app can load it before Django is set up. A job appears here only
once it is implemented and registered in ``portal.jobs`` (a test checks both lists agree).
"""

import os
from datetime import timedelta

from celery.schedules import crontab, schedule

#: How often beat looks for scheduled agents that are due (each agent's own period comes from its blueprint's
#: triggers; this is only the scheduler's resolution).
AGENT_SCHEDULER_SECONDS = int(os.environ.get("AGENT_SCHEDULER_SECONDS", "60"))

JOB_SCHEDULES = {
    "verify_audit_chain": crontab(minute=30, hour=3),
    "expire_approval_requests": crontab(minute=0),
    "expire_assignments": crontab(),  # every minute
    "send_expiry_reminders": crontab(minute=0, hour=8),
    "expire_agents": crontab(minute="*/5"),
    "sweep_orphans": crontab(minute=15, hour=2),
    "run_access_reviews": crontab(minute=5),
    "evaluate_risk": crontab(minute="*/5"),
    "run_scheduled_agents": schedule(run_every=timedelta(seconds=AGENT_SCHEDULER_SECONDS)),
    "expire_runs": crontab(),  # every minute
}
