"""A quiet console: refused requests are one line without a traceback, start-up prints no warning we can avoid,
and every page has an icon (no 404 for /favicon.ico)."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from portal.logfilters import ClientErrorsWithoutTraceback

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_a_403_is_logged_on_one_line_without_a_traceback(client, world, caplog):
    client.force_login(world.contributor)
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = client.get("/directory/users/new/", secure=True)
    assert response.status_code == 403
    refused = [r for r in caplog.records if r.name == "django.request" and getattr(r, "status_code", 0) == 403]
    assert refused, "the refusal is still logged"
    assert all(r.exc_info is None and not r.exc_text for r in refused)


def test_server_errors_keep_their_traceback():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error", None,
                                   sys.exc_info())
    record.status_code = 500
    assert ClientErrorsWithoutTraceback().filter(record) and record.exc_info is not None
    record.status_code = 403
    assert ClientErrorsWithoutTraceback().filter(record) and record.exc_info is None


def test_the_embedded_broker_names_its_host_so_kombu_does_not_warn():
    from kombu import Connection

    url = settings.CELERY_BROKER_URL if settings.CELERY_BROKER_URL.startswith("filesystem") else "filesystem://localhost/"
    assert Connection(url).hostname  # no "No hostname was supplied" warning at start
    assert 'CELERY_BROKER_URL = "filesystem://localhost/"' in (ROOT / "portal" / "settings.py").read_text()


def test_the_package_metadata_uses_an_spdx_license_so_setuptools_does_not_warn():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(project["project"]["license"], str)  # a table is deprecated by setuptools 77+


@pytest.mark.django_db
def test_favicon_is_linked_from_every_page_and_served_at_the_root(client, world):
    client.force_login(world.owner)
    html = client.get("/", secure=True).content.decode()
    assert '<link rel="icon" href="/static/portal/favicon.svg"' in html
    response = client.get("/favicon.ico", secure=True)
    assert response.status_code == 301 and response["Location"] == "/static/portal/favicon.svg"


def test_make_run_hides_the_development_server_banner():
    script = (ROOT / "bin" / "run-portal").read_text()
    assert "DJANGO_RUNSERVER_HIDE_WARNING" in script
    subprocess.run(["bash", "-n", str(ROOT / "bin" / "run-portal")], check=True)
