"""A request the database fails under answers 503, never 500 (portal/unavailable.py; docs/design.md, "Faults"):
JSON ``temporarily_unavailable`` with ``Retry-After`` on the OAuth endpoints, JSON on the API, a plain HTML page
elsewhere, logged; whether the database fails in the view or before it (loading the session and the workspace).

The database fails for real here: ``connection.execute_wrapper`` (Django's hook around every query) answers each
statement with the ``OperationalError`` a lost connection raises. Savepoint statements still pass, so the test's
own transaction rolls back as usual. (The token endpoint's PostgreSQL fast path runs on the raw connection, outside
that hook: tests/governance/signin/test_connection_faults.py and tests/faults/test_database_restart.py break it.)
"""

from __future__ import annotations

import base64
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.test import Client
from django.utils import timezone

from governance.signin import resources, tokens

pytestmark = pytest.mark.django_db

LOST = "server closed the connection unexpectedly"


@contextmanager
def database_lost():
    def fail(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            return execute(sql, params, many, context)
        raise OperationalError(LOST)

    with connection.execute_wrapper(fail):
        yield


def _unavailable_json(response) -> dict:
    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert int(response["Retry-After"]) > 0
    return response.json()


def test_the_token_endpoint_answers_a_json_503_with_retry_after_when_the_database_is_lost(caplog):
    basic = base64.b64encode(b"aip-some-client:some-secret").decode()
    with database_lost(), caplog.at_level("WARNING", logger="portal.unavailable"):
        response = Client().post("/oauth/token/", "grant_type=client_credentials",
                                 content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Basic {basic}")

    body = _unavailable_json(response)
    assert body["error"] == "temporarily_unavailable" and body["error_description"]
    assert response["Cache-Control"] == "no-store"
    assert "database unavailable: POST /oauth/token/ answered 503 (OperationalError: " + LOST in caplog.text


def test_an_api_call_answers_a_json_503_whether_the_database_fails_in_the_view_or_before_it(world):
    now = timezone.now()  # a well-signed JWT, so that its row is what the view reads (docs/oauth.md)
    value, _hash = tokens.mint(at=now, expires_at=now + timedelta(minutes=5), client_id="aip-some-client",
                               audience=resources.portal_identifier(), scopes=["Portal.Agents.Read.All"])
    with database_lost():  # bearer token: read in the view
        response = Client().get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {value}")
    assert "temporarily unavailable" in _unavailable_json(response)["detail"]

    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(world.owner)
    with database_lost():  # session: read by the middleware, before the view
        response = signed_in.get("/api/v1/agents/")
    assert "temporarily unavailable" in _unavailable_json(response)["detail"]


def test_a_page_answers_a_plain_html_503_whether_the_database_fails_in_the_view_or_before_it(world, caplog):
    with database_lost():  # signing in: the view reads the user
        response = Client().post("/accounts/login/", {"username": "owner", "password": "whatever-it-is"})
    assert response.status_code == 503 and response["Content-Type"].startswith("text/html")
    assert b"briefly unavailable" in response.content and int(response["Retry-After"]) > 0

    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(world.owner)
    with database_lost(), caplog.at_level("WARNING", logger="portal.unavailable"):
        response = signed_in.get("/")
    assert response.status_code == 503 and b"briefly unavailable" in response.content
    assert "GET / answered 503" in caplog.text


def test_any_other_error_is_still_a_server_error(world):
    signed_in = Client(raise_request_exception=False)
    signed_in.force_login(world.owner)

    def fail(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
            return execute(sql, params, many, context)
        raise ZeroDivisionError

    with connection.execute_wrapper(fail):
        response = signed_in.get("/api/v1/agents/")
    assert response.status_code == 500
