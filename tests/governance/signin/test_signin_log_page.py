"""The sign-in log's page at volume (docs/design.md, "The sign-in log at volume"): the last 24 hours by default,
said on the page with links to widen; an estimated count labelled as one above the exact-count limit; the agent
filter read on its index, not by scanning the log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from governance.signin import signins
from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db


def _rows(agent, count: int, **fields) -> list[SignIn]:
    values = {"agent": agent, "client_id": agent.identity.client_id, "actor_kind": "agent", "outcome": "success",
              **fields}
    return SignIn.objects.bulk_create([SignIn(**values) for _ in range(count)])


def test_the_default_view_is_the_last_24_hours_and_says_so(client, registry_world):
    w = registry_world
    recent = _rows(w.agent, 1)[0]
    older = _rows(w.agent, 1, at=timezone.now() - timedelta(days=3))[0]
    client.force_login(w.ga)
    response = client.get("/governance/sign-ins/")
    page = response.content.decode()
    assert {row.pk for row in response.context["page"]} == {recent.pk}
    assert "Showing <strong>the last 24 hours</strong>" in page
    assert 'href="?period=7d"' in page  # a way to widen
    wider = client.get("/governance/sign-ins/?period=7d")
    assert {row.pk for row in wider.context["page"]} == {recent.pk, older.pk}
    dated = client.get(f"/governance/sign-ins/?from={(timezone.now() - timedelta(days=3)).date().isoformat()}")
    assert older.pk in {row.pk for row in dated.context["page"]}
    assert "Showing the dates chosen below" in dated.content.decode()


def test_estimated_counts_are_labelled_as_such(client, registry_world, monkeypatch, postgres):
    monkeypatch.setattr(signins, "EXACT_COUNT_LIMIT", 20)
    _rows(registry_world.agent, 120)
    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{SignIn._meta.db_table}"')
    client.force_login(registry_world.ga)
    response = client.get("/governance/sign-ins/")
    page = response.content.decode()
    assert response.context["page"].paginator.estimated
    assert 'data-count-estimated="true"' in page
    assert "of about " in page and "(an estimate:" in page
    exact = client.get("/governance/sign-ins/?outcome=failure")
    assert not exact.context["page"].paginator.estimated
    assert "an estimate" not in exact.content.decode()


def test_estimates_read_as_words():
    assert signins.about(5_012_345) == "about 5.0 million"
    assert signins.about(12_345) == "about 12,000"
    assert signins.about(987) == "about 990"


def test_the_agent_filter_reads_the_agent_index_not_the_whole_log(registry_world, postgres):
    """100,000 rows over the last day: the agent filter's query is planned on an index."""
    agent = registry_world.agent
    table = SignIn._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"""INSERT INTO "{table}" (at, client_id, actor_kind, grant_type, requested_scopes,
            granted_scopes, outcome, error, reason, policies, resource, credential_issuer, credential_type, agent_id)
            SELECT now() - (g % 80000) * interval '1 second', 'bulk', 'agent', '', '[]', '[]', 'success', '', '', '[]',
                   '', '', '', NULL FROM generate_series(1, 100000) g""")
        cursor.execute(f'ANALYZE "{table}"')
    _rows(agent, 5)
    rows = signins.signins_for_page(signins.signins_filtered(SignIn.objects.all(), {"agent": agent.name}))[:50]
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
        scanned = re.findall(r"Seq Scan on (\w+)", plan)
        cursor.execute("SELECT relname FROM pg_class WHERE relname = ANY(%s) AND reltuples > 1000", [scanned])
        large = [row[0] for row in cursor.fetchall()]
    assert not large, f"a sequential scan of a large partition: {large}\n{plan}"  # only empty days are scanned
    assert "Index Scan on signin_signin_p" in plan and "agent_id_at" in plan, plan  # the agent index of each day
    assert len(list(rows)) == 5
