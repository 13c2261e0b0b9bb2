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


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_wizard_sponsors_and_owners_are_picked_by_typing_part_of_a_name(live_server, browser, catalog):
    """The set-up wizard's sponsors and owners fields are comboboxes (labelled, with a labelled list of suggestions):
    part of a display name is typed, the arrow keys walk the suggestions and Enter picks one, which is added after
    the names already there with the same separator as the bulk file's (docs/design.md, "Pickers")."""
    olga = UserFactory(username="olga", display_name="Olga Berg")
    make_workspace("alpha", owners=[olga, UserFactory(username="oscar", display_name="Oscar Wilde")],
                   contributors=[UserFactory(username="sam", display_name="Sam Reyes"),
                                 UserFactory(username="sal", display_name="Sally Reynolds")])
    blueprint = make_blueprint("PickedAgent", permissions=("User.Read.All",))
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/agents/new/{blueprint.pk}/")
    page.get_by_label("Name").fill("picked-agent")
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Continue").click()

    sponsors = page.get_by_role("combobox", name="Sponsors")
    assert sponsors.input_value() == "olga"
    assert sponsors.get_attribute("aria-expanded") == "false"
    sponsors.press("End")
    sponsors.press_sequentially("; reyn", delay=40)  # part of Sally Reynolds's name, not her username
    listbox = page.get_by_role("listbox", name="Suggestions")
    listbox.get_by_role("option", name="Sally Reynolds (sal)").wait_for()
    assert listbox.get_by_role("option").all_inner_texts() == ["Sally Reynolds (sal)"]
    assert sponsors.get_attribute("aria-expanded") == "true"
    sponsors.press("ArrowDown")
    assert sponsors.get_attribute("aria-activedescendant") == \
        listbox.get_by_role("option", name="Sally Reynolds (sal)").get_attribute("id")
    sponsors.press("Enter")  # picks the suggestion; the form is not submitted
    assert sponsors.input_value() == "olga; sal; "
    assert not listbox.is_visible() and sponsors.get_attribute("aria-expanded") == "false"

    owners = page.get_by_role("combobox", name="Owners")
    owners.fill("")
    owners.press_sequentially("re", delay=40)  # Sam Reyes and Sally Reynolds
    owner_list = page.get_by_role("listbox", name="Suggestions")
    owner_list.get_by_role("option", name="Sam Reyes (sam)").wait_for()
    assert owner_list.get_by_role("option").all_inner_texts() == ["Sally Reynolds (sal)", "Sam Reyes (sam)"]
    owners.press("ArrowDown")
    owners.press("ArrowDown")
    owners.press("Enter")
    assert owners.input_value() == "sam; "
    assert _current_step(page) == "4 Sponsors and owners"

    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Review").click()
    page.wait_for_selector("text=Review and create")
    assert page.locator("dt:has-text('Sponsors') + dd").inner_text().split() == ["olga", "sal"]
    assert page.locator("dt:has-text('Owners') + dd").inner_text().split() == ["sam"]


def _current_step(page) -> str:
    return page.locator('#wizard-steps li[aria-current="step"]').inner_text().strip()

