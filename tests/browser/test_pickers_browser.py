"""In Chromium: typing in a people field fills its suggestions from the picker endpoint (htmx), and the chosen name
goes through the ordinary form: adding a sponsor to the selected agents from the agents list."""

from __future__ import annotations

import pytest

from agents import registry
from portal.models import AuditEvent
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_people_picker_suggests_as_you_type_and_the_choice_is_used(live_server, browser, catalog):
    olga = UserFactory(username="olga", display_name="Olga Berg")
    workspace = make_workspace("alpha", owners=[olga, UserFactory(username="oscar", display_name="Oscar Wilde")],
                               contributors=[UserFactory(username="sam", display_name="Sam Reyes")])
    UserFactory(username="sandra")  # in no workspace olga sees: never offered
    registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        make_blueprint("PickAgent", permissions=("User.Read.All",)), "picked", sponsors=[olga], owners=[olga]))

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/agents/")
    page.get_by_label("Sponsor to add (username)").press_sequentially("sa", delay=50)
    options = page.locator("#bulk-sponsor-options option")
    options.first.wait_for(state="attached")
    assert [options.nth(i).get_attribute("value") for i in range(options.count())] == ["sam"]
    page.get_by_label("Select picked").check()
    page.get_by_label("With the selected agents").select_option("add_sponsor")
    page.get_by_label("Sponsor to add (username)").fill("sam")
    page.get_by_role("button", name="Review…").click()
    page.get_by_role("button", name="Add a sponsor 1 agent").click()
    page.wait_for_url("**/agents/")  # back to the list as it was (the sponsor chosen is not a filter)
    assert "1 agent sponsored by sam." in page.locator("[data-message]").inner_text()
    assert AuditEvent.objects.filter(action="agent.sponsor_add", after__user="sam").count() == 1
