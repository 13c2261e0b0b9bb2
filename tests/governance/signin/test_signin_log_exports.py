"""Exports that respect people and machines (docs/design.md, "The sign-in log at volume"): an export follows the
log's filters; above ``EXPORT_MAX_ROWS`` it runs as a background job with progress, and its file is downloaded
once, by its requester, then deleted (a second download is 410 with the reason); a file nobody fetched expires."""

from __future__ import annotations

import csv
import io
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.signin import exports
from governance.signin.models import SignIn, SignInExport
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_limit(settings, tmp_path):
    settings.EXPORT_MAX_ROWS = 5
    settings.EXPORT_DIR = tmp_path / "exports"
    return tmp_path / "exports"


def _rows(agent, count: int, **fields) -> None:
    values = {"agent": agent, "client_id": agent.identity.client_id, "actor_kind": "agent", "outcome": "success",
              "grant_type": "client_credentials", "granted_scopes": ["User.Read.All"], **fields}
    SignIn.objects.bulk_create([SignIn(**values) for _ in range(count)])


def _start(client, query: str = "") -> SignInExport:
    """The log's export link, then the confirmation's POST: returns the queued export."""
    page = client.get(f"/governance/sign-ins/export/?{query}{'&' if query else ''}format=csv")
    assert page.status_code == 200 and not page.streaming
    assert "downloadable once" in page.content.decode()
    assert not SignInExport.objects.exists()  # a GET starts nothing
    data = dict(pair.split("=") for pair in query.split("&") if pair)
    response = client.post("/governance/sign-ins/exports/", {**data, "format": "csv"})
    export = SignInExport.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/governance/sign-ins/exports/{export.pk}/"
    return export


def _download(client, export):
    return client.post(f"/governance/sign-ins/exports/{export.pk}/download/")


def test_a_large_export_runs_as_a_job_and_downloads_once(client, registry_world, small_limit):
    w = registry_world
    _rows(w.agent, 7)
    _rows(w.agent, 2, outcome="failure", error="invalid_client", granted_scopes=[])
    client.force_login(w.ga)
    export = _start(client)
    assert export.status == "queued" and export.requested_by == w.ga

    progress = client.get(f"/governance/sign-ins/exports/{export.pk}/", HTTP_HX_REQUEST="true")
    assert 'hx-trigger="every 1s"' in progress.content.decode()  # the page polls while it runs
    exports.signin_export_run(export.pk)
    export.refresh_from_db()
    assert (export.status, export.done, export.total) == ("succeeded", 9, 9)
    page = client.get(f"/governance/sign-ins/exports/{export.pk}/").content.decode()
    assert "Download the file (once)" in page and "every 1s" not in page

    response = _download(client, export)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 9 and {r["outcome"] for r in rows} == {"success", "failure"}
    assert list(small_limit.iterdir()) == []  # the file went as it was handed over

    again = _download(client, export)
    assert again.status_code == 410
    assert "already downloaded" in again.content.decode()
    actions = list(AuditEvent.objects.filter(action__startswith="signin.export").values_list("action", flat=True))
    assert sorted(actions) == ["signin.export_download", "signin.export_finish", "signin.export_start"]


def test_the_export_follows_the_filters(client, registry_world, small_limit):
    w = registry_world
    _rows(w.agent, 6, outcome="failure", error="invalid_client")
    _rows(w.agent, 4)
    client.force_login(w.owner)
    assert client.get("/governance/sign-ins/export/?outcome=success&format=csv").streaming  # 4 rows: streamed
    export = _start(client, "outcome=failure")
    assert export.filters == {"outcome": "failure"}
    exports.signin_export_run(export.pk)
    text = b"".join(_download(client, export).streaming_content).decode()
    assert [r["outcome"] for r in csv.DictReader(io.StringIO(text))] == ["failure"] * 6


def test_only_the_requester_sees_or_downloads_an_export(client, registry_world, small_limit):
    w = registry_world
    _rows(w.agent, 6)
    client.force_login(w.ga)
    export = _start(client)
    exports.signin_export_run(export.pk)
    client.force_login(w.inherited)  # a Security Administrator, who reads every sign-in, but not this file
    assert client.get(f"/governance/sign-ins/exports/{export.pk}/").status_code == 404
    assert _download(client, export).status_code == 404
    client.force_login(w.contributor)
    assert _download(client, export).status_code == 403
    assert SignInExport.objects.get().downloaded_at is None


def test_an_export_nobody_downloads_expires_and_its_file_goes(client, registry_world, small_limit):
    w = registry_world
    _rows(w.agent, 6)
    client.force_login(w.ga)
    export = _start(client)
    exports.signin_export_run(export.pk)
    assert len(list(small_limit.iterdir())) == 1
    SignInExport.objects.filter(pk=export.pk).update(expires_at=timezone.now() - timedelta(seconds=1),
                                                     created_at=timezone.now() - timedelta(hours=30))
    assert exports.expire_sign_in_exports() == {"expired": 1}
    assert exports.expire_sign_in_exports() == {"expired": 0}  # idempotent
    assert list(small_limit.iterdir()) == []
    response = _download(client, export)
    assert response.status_code == 410 and "expired" in response.content.decode()


def test_an_invalid_filter_starts_no_export(client, registry_world, small_limit):
    client.force_login(registry_world.ga)
    response = client.post("/governance/sign-ins/exports/", {"ip": "not-an-ip", "format": "csv"})
    assert response.status_code == 302 and response["Location"] == "/governance/sign-ins/"
    assert not SignInExport.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_large_export_runs_on_a_real_celery_worker_over_redis(redis_url, registry_world, small_limit):
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app as celery_app

    w = registry_world
    _rows(w.agent, 8)
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        queued = exports.signin_export_start(actor=w.ga, filters={"period": "24h"})  # sent on commit
        deadline = time.monotonic() + 30
        export = queued
        while time.monotonic() < deadline:
            export = SignInExport.objects.get(pk=queued.pk)
            if export.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
    assert export.status == "succeeded", export.error
    assert export.done == 8
    handle = exports.signin_export_download(actor=w.ga, export=export)
    with handle:
        assert len(handle.read().decode().strip().splitlines()) == 9  # the header and eight rows
    with pytest.raises(exports.ExportGone):
        exports.signin_export_download(actor=w.ga, export=export)
