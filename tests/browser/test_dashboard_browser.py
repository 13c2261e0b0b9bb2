"""In Chromium at 1280 px: the dashboard's posture pictures are drawn (inline SVG with a size on the page) and each
opens its table with the same numbers; the sign-in log and an agent's page draw theirs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.signin.models import SignIn
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_dashboard_pictures_render_with_their_tables(live_server, browser, catalog):
    olga = UserFactory(username="olga")
    workspace = make_workspace("alpha", owners=[olga, UserFactory(username="oscar")])
    blueprint = make_blueprint("PictureAgent", permissions=("User.Read.All",))
    registry.agents_provision(actor=olga, workspace=workspace, specs=[
        agent_spec(blueprint, f"pic-{n}", sponsors=[olga], owners=[olga]) for n in range(4)])
    agent = Agent.objects.get(name="pic-0")
    now = timezone.now()
    SignIn.objects.bulk_create([SignIn(agent=agent, at=now - timedelta(hours=n), outcome="success" if n % 4 else
                                       "failure") for n in range(12)])

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "olga")
    for chart_id in ("agents-by-status", "agents-by-risk", "credentials-expiring", "access-ending", "open-reviews",
                     "hygiene-findings"):
        figure = page.locator(f'figure[data-chart="{chart_id}"]')
        assert figure.count() == 1
    svg = page.locator('figure[data-chart="agents-by-status"] svg[role="img"]')
    box = svg.bounding_box()
    assert box and box["width"] > 200 and box["height"] > 50
    assert page.locator('figure[data-chart="agents-by-status"] rect.chart-ok').count() == 1
    table = page.locator('table[data-chart-table="agents-by-status"]')
    assert not table.is_visible()
    page.locator('figure[data-chart="agents-by-status"] summary').click()
    assert table.is_visible()
    assert table.locator("tr", has_text="Active").locator("td").inner_text() == "4"
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280

    page.goto(f"{live_server.url}/governance/sign-ins/")
    volume = page.locator('figure[data-chart="signin-volume"] svg[role="img"]')
    assert volume.bounding_box()["width"] > 600
    page.locator('figure[data-chart="signin-volume"] summary').click()
    cells = page.locator('table[data-chart-table="signin-volume"] tbody tr td:last-child').all_inner_texts()
    assert sum(int(c) for c in cells) == 12

    page.goto(f"{live_server.url}/agents/{agent.pk}/")
    strip = page.locator('figure[data-chart="agent-timeline"] svg[role="img"]')
    assert strip.bounding_box()["width"] > 600
    page.locator('figure[data-chart="agent-timeline"] summary').click()
    assert page.locator('table[data-chart-table="agent-timeline"] tbody tr', has_text="Sign-ins").count() >= 1
