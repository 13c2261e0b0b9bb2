"""The Celery application: broker from settings (Redis or the embedded filesystem transport), schedule in code."""

import os

from celery import Celery

from portal.schedules import JOB_SCHEDULES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    name: {"task": "portal.run_job", "schedule": schedule, "args": (name, "schedule")}
    for name, schedule in JOB_SCHEDULES.items()
}
