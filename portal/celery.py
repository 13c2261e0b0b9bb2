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


def enqueue(task_name: str, *args, **options):
    """Send a task by its name once it is registered. Services enqueue through this instead of importing their
    task modules, which import the services: no import circle, and the worker stays the only place a task runs."""
    if task_name not in app.tasks:  # a web process loads the apps' task modules on its first enqueue
        app.loader.import_default_modules()
    return app.tasks[task_name].apply_async(args=args, **options)
