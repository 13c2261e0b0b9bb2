"""The Celery application: broker from settings (Redis or the embedded filesystem transport), schedule in code."""

import logging
import os
import threading
import time
from collections import deque

from celery import Celery
from kombu.exceptions import OperationalError
from kombu.utils.uuid import uuid

from portal.schedules import HEARTBEAT_SCHEDULE, JOB_SCHEDULES, schedule_period

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _expires(entry) -> float:
    """A scheduled run still queued when the next one is sent has expired: after the workers were down, each job runs
    once to catch up instead of once per missed period (docs/design.md, Faults). Never under a minute, so a busy
    worker still gets to a job scheduled every few seconds."""
    return max(schedule_period(entry).total_seconds(), 60.0)


app.conf.beat_schedule = {
    name: {"task": "portal.run_job", "schedule": schedule, "args": (name, "schedule"),
           "options": {"expires": _expires(schedule)}}
    for name, schedule in JOB_SCHEDULES.items()
}
# Beat's own pulse: a worker records when it arrives, so a stopped beat (or broker, or every worker) shows as late.
app.conf.beat_schedule["scheduler_heartbeat"] = {
    "task": "portal.scheduler_heartbeat", "schedule": HEARTBEAT_SCHEDULE,
    "options": {"expires": _expires(HEARTBEAT_SCHEDULE)},
}


# The request's own attempt to publish: one quick retry (a pooled connection Redis closed), then the message waits
# for the broker in this process instead of failing the request that queued it (docs/design.md, Faults).
QUICK_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}
PUBLISH_RETRY_SECONDS = 2.0
MAX_WAITING = 10_000  # messages kept per process while the broker is down; beyond that the oldest is dropped (logged)
WARN_EVERY_SECONDS = 60.0

logger = logging.getLogger("portal.celery")
_waiting: deque = deque()
_waiting_lock = threading.Lock()
_publisher: threading.Thread | None = None


def enqueue(task_name: str, *args, **options):
    """Send a task by its name once it is registered. Services enqueue through this instead of importing their
    task modules, which import the services: no import circle, and the worker stays the only place a task runs.

    When the broker does not answer, the message is kept in this process and published again every
    ``PUBLISH_RETRY_SECONDS`` by a background thread until the broker takes it, under the same task id; the
    caller gets None instead of the task's result handle. A message is lost only if the process ends before the
    broker returns (the work it names stays queued in the database, where the jobs that expire stale work see it)."""
    options.setdefault("task_id", uuid())
    try:
        return _publish(task_name, args, options, QUICK_RETRY)
    except OperationalError as error:
        _wait_for_broker(task_name, args, options, error)
        return None


def _publish(task_name: str, args: tuple, options: dict, retry_policy: dict):
    if task_name not in app.tasks:  # a web process loads the apps' task modules on its first enqueue
        app.loader.import_default_modules()
    return app.tasks[task_name].apply_async(args=args, retry=True, retry_policy=retry_policy, **options)


def waiting_for_broker() -> int:
    """How many messages this process holds until the broker answers (``/healthz``)."""
    return len(_waiting)


def _wait_for_broker(task_name: str, args: tuple, options: dict, error: Exception) -> None:
    global _publisher
    with _waiting_lock:
        if len(_waiting) >= MAX_WAITING:
            dropped = _waiting.popleft()
            logger.error("Broker down and %d messages waiting: dropped %s (task id %s)", MAX_WAITING, dropped[0],
                         dropped[2]["task_id"])
        _waiting.append((task_name, args, options))
        if _publisher is None:
            logger.warning("The broker does not answer (%s: %s): %s (task id %s) and any later message wait in "
                           "this process until it does", type(error).__name__, error, task_name, options["task_id"])
            _publisher = threading.Thread(target=_publish_waiting, name="publish-when-broker-returns", daemon=True)
            _publisher.start()


def _publish_waiting() -> None:
    """Publish the waiting messages in order, retrying every ``PUBLISH_RETRY_SECONDS`` until the broker answers."""
    global _publisher
    last_warning = time.monotonic()
    while True:
        with _waiting_lock:
            if not _waiting:
                _publisher = None  # under the lock: a message queued from now on starts a new thread
                return
            task_name, args, options = _waiting[0]
        try:
            _publish(task_name, args, options, QUICK_RETRY)
        except OperationalError as error:
            if time.monotonic() - last_warning >= WARN_EVERY_SECONDS:
                last_warning = time.monotonic()
                logger.warning("The broker still does not answer (%s); %d messages waiting", error, len(_waiting))
            time.sleep(PUBLISH_RETRY_SECONDS)
            continue
        with _waiting_lock:
            if _waiting and _waiting[0][2]["task_id"] == options["task_id"]:
                _waiting.popleft()
        logger.info("Published %s (task id %s) once the broker answered", task_name, options["task_id"])
