"""The posture dashboard on ``/``: pictures drawn on the server (inline SVG) each with the same numbers as a table,
counting only what the viewer may see, in a number of queries that does not grow with the data."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import registry
from agents.models import Agent, Credential
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _provision(world, workspace, owner, count: int, prefix: str):
    blueprint = make_blueprint(f"Posture{prefix}", permissions=("User.Read.All",))
    specs = [agent_spec(blueprint, f"{prefix}-{n}", sponsors=[owner], owners=[owner]) for n in range(count)]
    return registry.agents_provision(actor=owner, workspace=workspace, specs=specs)


def _table(html: str, chart_id: str) -> dict[str, list[str]]:
    """The rows of a chart's table: first cell → the other cells."""
    table = html.split(f'data-chart-table="{chart_id}"', 1)[1].split("</table>", 1)[0]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
        if cells and not row.lstrip().startswith("<th scope=\"col\""):
            rows[cells[0]] = cells[1:]
    return rows


def _get(client, user):
    client.force_login(user)
    response = client.get("/", secure=True)
    assert response.status_code == 200
    return response.content.decode()


def test_dashboard_draws_posture_pictures_with_tables_from_visible_agents_only(client, world):
    _provision(world, world.alpha, world.owner, 3, "alpha")
    _provision(world, world.beta, world.other, 5, "beta")  # another workspace: never counted for alpha's owner
    soon = timezone.now() + timedelta(days=10)
    Credential.objects.filter(identity__agent__workspace=world.alpha).update(expires_at=soon)
    Agent.objects.filter(workspace=world.alpha, name="alpha-0").update(risk_level="high")

    html = _get(client, world.owner)
    for chart_id in ("agents-by-status", "agents-by-risk", "credentials-expiring", "access-ending", "open-reviews",
                     "hygiene-findings"):
        assert f'data-chart="{chart_id}"' in html
        assert f'data-chart-table="{chart_id}"' in html
    svg = html.split('data-chart="agents-by-status"', 1)[1].split("</figure>", 1)[0]
    assert 'role="img"' in svg and 'aria-labelledby="agents-by-status-title agents-by-status-desc"' in svg
    assert "<summary>Show as table</summary>" in svg
    assert _table(html, "agents-by-status")["Active"] == ["3"]
    assert _table(html, "agents-by-risk")["High"] == ["1"]
    assert _table(html, "agents-by-risk")["None"] == ["2"]
    weeks = _table(html, "credentials-expiring")
    assert sum(int(cells[-1]) for cells in weeks.values()) == 3  # the three secrets of alpha, not beta's five
    assert "<script" not in svg and "cdn" not in html.lower()

    other = _get(client, world.other)
    assert _table(other, "agents-by-status")["Active"] == ["5"]
    assert sum(int(cells[-1]) for cells in _table(other, "credentials-expiring").values()) == 0


def test_dashboard_posture_queries_do_not_grow_with_agents(client, world, django_assert_max_num_queries):
    _provision(world, world.alpha, world.owner, 2, "few")
    client.force_login(world.owner)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        assert client.get("/", secure=True).status_code == 200
    _provision(world, world.alpha, world.owner, 40, "many")
    Credential.objects.filter(identity__agent__workspace=world.alpha).update(
        expires_at=timezone.now() + timedelta(days=20))
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert client.get("/", secure=True).status_code == 200
