"""When each governance job runs (DESIGN §4). Declared in code; Celery beat reads it through ``portal.celery``.

Kept free of model imports so the Celery app can load it before Django is set up. A job appears here only
once it is implemented and registered in ``portal.jobs`` (a test checks both lists agree).
"""

from celery.schedules import crontab

JOB_SCHEDULES = {
    "verify_audit_chain": crontab(minute=30, hour=3),
    "expire_approval_requests": crontab(minute=0),
    "expire_assignments": crontab(),  # every minute
    "send_expiry_reminders": crontab(minute=0, hour=8),
    "expire_agents": crontab(minute="*/5"),
    "sweep_orphans": crontab(minute=15, hour=2),
    "run_access_reviews": crontab(minute=5),
    "evaluate_risk": crontab(minute="*/5"),
}
