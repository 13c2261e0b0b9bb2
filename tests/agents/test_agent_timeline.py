"""An agent's timeline on its page: credentials, permissions, sign-ins per day, runs and risk as one SVG strip with
its table, in a number of queries that does not grow with the agent's history."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from governance.risk.models import RiskDetection
from governance.runs.models import Run
from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db


def _rows(html: str) -> list[list[str]]:
    table = html.split('data-chart-table="agent-timeline"', 1)[1].split("</table>", 1)[0].split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_agent_page_draws_its_timeline_with_a_table(client, registry_world):
    world, agent = registry_world, registry_world.agent
    now = timezone.now()
    for days, outcome in ((2, "success"), (2, "failure"), (5, "success"), (200, "success")):
        SignIn.objects.create(agent=agent, at=now - timedelta(days=days), outcome=outcome)
    Run.objects.create(agent=agent, status="failed", created_at=now - timedelta(days=3))
    RiskDetection.objects.create(agent=agent, kind="request_burst", level="medium", key="k",
                                 detected_at=now - timedelta(days=1))

    client.force_login(world.owner)
    html = client.get(f"/agents/{agent.pk}/", secure=True).content.decode()
    figure = html.split('data-chart="agent-timeline"', 1)[1].split("</figure>", 1)[0]
    assert 'role="img"' in figure and "<summary>Show as table</summary>" in figure
    lanes = [row[1] for row in _rows(html)]
    assert lanes.count("Sign-ins") == 2  # two days with sign-ins in the window; the 200-day-old one is outside
    assert "Credentials" in lanes and "Permissions" in lanes and "Runs" in lanes and "Risk" in lanes
    details = " | ".join(row[2] for row in _rows(html))
    assert "2 sign-ins (1 refused or failed)" in details and "1 runs (1 failed)" in details
    assert "User.Read.All granted" in details and "created" in details

    client.force_login(world.contributor)  # sees the agent, not the risk pages: no risk lane
    html = client.get(f"/agents/{agent.pk}/", secure=True).content.decode()
    assert "Risk" not in [row[1] for row in _rows(html)]


def test_agent_timeline_queries_do_not_grow_with_history(client, registry_world):
    world, agent = registry_world, registry_world.agent
    client.force_login(world.owner)
    with CaptureQueriesContext(connection) as few:
        client.get(f"/agents/{agent.pk}/", secure=True)
    now = timezone.now()
    SignIn.objects.bulk_create([SignIn(agent=agent, at=now - timedelta(hours=5 * n), outcome="success")
                                for n in range(200)])
    Run.objects.bulk_create([Run(agent=agent, status="succeeded", created_at=now - timedelta(hours=7 * n))
                             for n in range(100)])
    with CaptureQueriesContext(connection) as many:
        client.get(f"/agents/{agent.pk}/", secure=True)
    assert len(many.captured_queries) <= len(few.captured_queries)
