"""In Chromium: on the agents list an owner filters, selects every agent with one box, chooses Disable, reviews
the one confirmation page (what ends for each agent) and confirms; the list comes back with its filters, the agents
disabled, one audit event each."""

from __future__ import annotations

import pytest

from agents import registry
from agents.choices import AgentStatus
from agents.models import Agent
from portal.models import AuditEvent
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_bulk_disable_from_the_agents_list(live_server, browser, catalog):
    olga = UserFactory(username="olga")
    workspace = make_workspace("alpha", owners=[olga, UserFactory(username="oscar")])
    blueprint = make_blueprint("BulkAgent", permissions=("User.Read.All",))
    registry.agents_provision(actor=olga, workspace=workspace, specs=[
        agent_spec(blueprint, name, sponsors=[olga], owners=[olga]) for name in ("red-1", "red-2", "blue-1")])

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/agents/?q=red")
    assert page.locator("#agents-table tbody tr[data-agent]").count() == 2
    page.get_by_label("Select every agent on this page").check()
    assert page.get_by_label("Select red-1").is_checked() and page.get_by_label("Select red-2").is_checked()
    page.get_by_label("With the selected agents").select_option("disable")
    page.get_by_role("button", name="Review…").click()
    page.wait_for_url("**/agents/selected/**")
    assert page.locator("h1").inner_text() == "Disable: 2 agents"
    assert page.locator("#bulk-table tbody tr").count() == 2
    assert page.locator('#bulk-table tr[data-agent="red-1"] td[data-ends="tokens"]').inner_text() == "0"
    assert Agent.objects.filter(status=AgentStatus.DISABLED).count() == 0  # nothing yet
    page.get_by_role("button", name="Disable 2 agents").click()
    page.wait_for_url("**/agents/?q=red")
    assert "2 agents disabled." in page.locator("[data-message]").inner_text()
    assert set(Agent.objects.filter(status=AgentStatus.DISABLED).values_list("name", flat=True)) == {"red-1", "red-2"}
    assert AuditEvent.objects.filter(action="agent.disable").count() == 2
