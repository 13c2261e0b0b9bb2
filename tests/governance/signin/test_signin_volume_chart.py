"""The sign-in log's picture: sign-ins by outcome over the page's time window, drawn as inline SVG with the same
numbers as a table, counting only the rows the page may list, in one grouped query."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db


def _table(html: str) -> list[list[str]]:
    table = html.split('data-chart-table="signin-volume"', 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    return [[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_signin_log_draws_volume_by_outcome_with_its_table(client, registry_world):
    world = registry_world
    now = timezone.now()
    for hours, outcome in ((1, "success"), (1, "success"), (1, "failure"), (3, "blocked"), (30, "success")):
        SignIn.objects.create(agent=world.agent, at=now - timedelta(hours=hours), outcome=outcome)
    SignIn.objects.create(agent=None, client_id="stranger", at=now - timedelta(hours=1), outcome="failure")

    client.force_login(world.owner)  # an owner of alpha sees alpha's agents' sign-ins, not unknown clients'
    response = client.get("/governance/sign-ins/", secure=True)
    assert response.status_code == 200
    html = response.content.decode()
    figure = html.split('data-chart="signin-volume"', 1)[1].split("</figure>", 1)[0]
    assert 'role="img"' in figure and "<summary>Show as table</summary>" in figure and "<rect" in figure
    rows = _table(html)
    assert [row[0] for row in rows][:1] and len(rows) in (24, 25)  # hours of the default window: the last day
    totals = [sum(int(cell) for cell in row[1:4]) for row in rows]
    assert sum(totals) == 4  # the 30-hour-old one is outside the window
    assert sum(int(row[1]) for row in rows) == 2 and sum(int(row[2]) for row in rows) == 1
    assert sum(int(row[3]) for row in rows) == 1

    week = client.get("/governance/sign-ins/?period=7d", secure=True).content.decode()
    assert len(_table(week)) == 8 and sum(int(row[-1]) for row in _table(week)) == 5  # by day now

    failures = client.get("/governance/sign-ins/?period=7d&outcome=failure", secure=True).content.decode()
    assert sum(int(row[-1]) for row in _table(failures)) == 1  # the page's filters apply to the picture too


def test_signin_volume_chart_costs_one_grouped_query_whatever_the_rows(client, registry_world,
                                                                     django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    world = registry_world
    client.force_login(world.owner)
    SignIn.objects.create(agent=world.agent, outcome="success")
    with CaptureQueriesContext(connection) as few:
        client.get("/governance/sign-ins/?period=30d", secure=True)
    now = timezone.now()
    SignIn.objects.bulk_create([SignIn(agent=world.agent, at=now - timedelta(hours=n), outcome="success")
                                for n in range(300)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get("/governance/sign-ins/?period=30d", secure=True)
