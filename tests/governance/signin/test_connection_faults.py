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
