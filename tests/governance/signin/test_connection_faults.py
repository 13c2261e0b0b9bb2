"""The PostgreSQL fast path on a lost connection (governance/signin/fastpath.py; docs/design.md, "Faults").

The fast path runs prepared statements on the raw psycopg connection, outside Django's cursors. A connection that
PostgreSQL closed (a restart, a failover; here ``pg_terminate_backend`` from another session) must be treated as
Django treats its own: an error during a request is raised as Django's ``OperationalError`` and marks the connection,
which Django then closes at the end of the request; between requests, the health check (``CONN_HEALTH_CHECKS``)
replaces it before the fast path's first statement. The new connection prepares the statements again.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from django.db import OperationalError, connection

from governance.signin import fastpath

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("postgres")]


def _terminate(pid: int) -> None:
    """Close the backend ``pid`` from another session, as a restarting server does, and wait until it is gone."""
    params = connection.settings_dict
    with psycopg.connect(dbname=params["NAME"], user=params["USER"], password=params["PASSWORD"] or None,
                         host=params["HOST"] or None, port=params["PORT"] or None, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        deadline = time.monotonic() + 30
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} still there"
            time.sleep(0.05)


def _prepared_statements() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        return cursor.fetchone()[0]


def test_a_fast_path_error_is_reported_to_django_and_the_broken_connection_is_dropped_at_the_end_of_the_request():
    assert fastpath.resource_server("no-such-secret") is None  # connected, statement prepared
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)

    # Mid-request (the health check has run for this request): the statement fails, as Django's error.
    with pytest.raises(OperationalError):
        fastpath.resource_server("no-such-secret")
    assert connection.errors_occurred

    connection.close_if_unusable_or_obsolete()  # what Django does when the request ends
    assert connection.connection is None
    assert fastpath.resource_server("no-such-secret") is None  # the next request reconnects
    assert connection.connection.info.backend_pid != old_pid
    assert _prepared_statements() >= 1  # prepared again on the new connection


def test_between_requests_a_lost_connection_is_replaced_before_the_fast_paths_first_statement():
    assert fastpath.resource_server("no-such-secret") is None
    connection.close_if_unusable_or_obsolete()  # the request ends; the connection is kept (CONN_MAX_AGE)
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)

    assert fastpath.resource_server("no-such-secret") is None  # no error: health-checked, replaced
    assert connection.connection.info.backend_pid != old_pid
    assert not connection.errors_occurred


def _count_health_checks(monkeypatch) -> list[int]:
    """Count Django's ``SELECT 1`` health checks (``is_usable``) from now on."""
    checks = []
    original = connection.is_usable
    monkeypatch.setattr(connection, "is_usable", lambda: checks.append(1) or original())
    return checks


def test_a_read_first_in_a_request_is_its_own_health_check(monkeypatch):
    """The hot path's first statement is a read: it is not preceded by a ``SELECT 1`` round trip. A write first in a
    request still is (it is never repeated)."""
    assert fastpath.resource_server("no-such-secret") is None
    checks = _count_health_checks(monkeypatch)

    connection.close_if_unusable_or_obsolete()  # the request ends; the next one starts unchecked
    assert fastpath.resource_server("no-such-secret") is None
    assert checks == []
    assert connection.health_check_done  # the read counted as the check: later statements are not checked again
    assert fastpath.resource_server("no-such-secret") is None
    assert checks == []

    connection.close_if_unusable_or_obsolete()
    connection.close_if_health_check_failed()  # what a write first in a request gets (fastpath.record)
    assert checks == [1]


def test_a_write_first_in_a_request_is_health_checked_and_not_repeated(monkeypatch):
    """``record`` is never the statement that finds a lost connection: Django's check runs before it and replaces
    the connection, so the row is written once."""
    from django.utils import timezone

    assert fastpath.resource_server("no-such-secret") is None
    connection.close_if_unusable_or_obsolete()
    old_pid = connection.connection.info.backend_pid
    _terminate(old_pid)
    checks = _count_health_checks(monkeypatch)
    sign_in = {"at": timezone.now(), "agent_id": None, "client_id": "health-check-write", "actor_kind": "unknown",
               "subject_id": None, "ip": "192.0.2.9", "grant_type": "client_credentials", "requested_scopes": [],
               "granted_scopes": [], "outcome": "failure", "error": "invalid_client", "reason": "test",
               "policies": [], "resource": "", "credential_type": "", "credential_issuer": ""}
    assert fastpath.record(sign_in, None) is None
    assert checks == [1]
    assert connection.connection.info.backend_pid != old_pid
    from governance.signin.models import SignIn

    assert SignIn.objects.filter(client_id="health-check-write").count() == 1
