"""The Jobs page: runs filter by job and outcome (kept in the URL and in the page's refresh), and the successful
runs of the every-minute jobs are folded away by default so the rest stays in view."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from portal.models import JobRun

pytestmark = pytest.mark.django_db


def _runs(html: str) -> list[tuple[str, str]]:
    table = html.split('id="runs-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr data-run="\d+" data-status="(\w+)"><td class="mono text-muted">\d+</td><td class="mono">'
                      r'(\w+)</td>', table)


@pytest.fixture
def history(world):
    now = timezone.now()
    runs = [JobRun(job="expire_assignments", trigger="schedule", status="succeeded",
                   started_at=now - timedelta(minutes=n), finished_at=now - timedelta(minutes=n)) for n in range(1, 41)]
    runs.append(JobRun(job="expire_assignments", trigger="schedule", status="failed", error="database went away",
                       started_at=now - timedelta(minutes=5, seconds=30), finished_at=now - timedelta(minutes=5)))
    runs.append(JobRun(job="sweep_orphans", trigger="schedule", status="succeeded",
                       started_at=now - timedelta(hours=3), finished_at=now - timedelta(hours=3)))
    JobRun.objects.bulk_create(runs)
    return world


def test_jobs_page_folds_routine_successes_of_frequent_jobs_by_default(client, history):
    client.force_login(history.owner)
    html = client.get("/jobs/", secure=True).content.decode()
    assert _runs(html) == [("failed", "expire_assignments"), ("succeeded", "sweep_orphans")]
    assert 'data-folded="40"' in html and "routine=on" in html

    everything = client.get("/jobs/?routine=on", secure=True).content.decode()
    assert len(_runs(everything)) == 42 and 'data-folded' not in everything


def test_jobs_page_filters_by_job_and_outcome_and_keeps_the_filters_in_its_refresh(client, history):
    client.force_login(history.owner)
    one_job = client.get("/jobs/?job=expire_assignments", secure=True).content.decode()
    assert len(_runs(one_job)) == 41 and {job for _status, job in _runs(one_job)} == {"expire_assignments"}
    failed = client.get("/jobs/?status=failed", secure=True).content.decode()
    assert _runs(failed) == [("failed", "expire_assignments")]
    assert 'hx-get="/jobs/?status=failed"' in failed
    both = client.get("/jobs/?job=sweep_orphans&status=failed", secure=True).content.decode()
    assert _runs(both) == [] and "No runs yet" in both

    refresh = client.get("/jobs/?status=failed", secure=True, HTTP_HX_REQUEST="true").content.decode()
    assert _runs(refresh) == [("failed", "expire_assignments")]


def test_jobs_page_refuses_an_unknown_job_or_outcome_in_words(client, history):
    client.force_login(history.owner)
    response = client.get("/jobs/?job=nope&status=exploded", secure=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Select a valid choice" in html
    assert _runs(html) == [("failed", "expire_assignments"), ("succeeded", "sweep_orphans")]  # the default view


def test_jobs_page_queries_do_not_grow_with_runs(client, history, django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(history.owner)
    with CaptureQueriesContext(connection) as before:
        client.get("/jobs/", secure=True)
    now = timezone.now()
    JobRun.objects.bulk_create([JobRun(job="expire_agents", trigger="schedule", status="failed",
                                       started_at=now - timedelta(seconds=n), finished_at=now) for n in range(1, 200)])
    with django_assert_max_num_queries(len(before.captured_queries)):
        client.get("/jobs/", secure=True)
