"""In Chromium: the set-up wizard goes step by step (1 Blueprint · 2 Identity · 3 Scope · 4 Sponsors and owners ·
5 Details · 6 Review) with the current step marked (aria-current="step"); "Run as user account" appears only when
that identity is chosen; placeholders never look like values; every problem of a step is listed at once."""

from __future__ import annotations

import pytest

from agents.models import Agent
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, make_blueprint, make_workspace


def _current(page) -> str:
    return page.locator('#wizard-steps li[aria-current="step"]').inner_text().strip()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_the_wizard_goes_step_by_step_with_the_current_step_marked(live_server, browser, catalog):
    olga = UserFactory(username="olga", display_name="Olga Owner")
    make_workspace("alpha", owners=[olga, UserFactory(username="oscar")])
    blueprint = make_blueprint("WizardAgent", permissions=("User.Read.All",))
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/agents/new/{blueprint.pk}/")

    assert _current(page) == "2 Identity"
    assert [t.strip() for t in page.locator("#wizard-steps li").all_inner_texts()][:3] == \
        ["1 Blueprint", "2 Identity", "3 Scope"]
    for placeholder in page.locator("[placeholder]").evaluate_all("els => els.map(e => e.placeholder)"):
        assert placeholder.startswith("e.g.") or placeholder.startswith("Search"), placeholder
    run_as = page.get_by_label("Run as user account")
    assert not run_as.is_visible()  # a new agent identity is chosen: no user account to run as
    page.get_by_label("Run as an existing user account").check()
    assert run_as.is_visible()
    page.get_by_label("New agent identity (its own credentials, fixed permissions)").check()
    assert not run_as.is_visible()

    # Two problems on this step: both listed at once, and the step stays the current one.
    page.get_by_label("Name").fill("")
    page.get_by_label("Run as an existing user account").check()
    page.get_by_role("button", name="Continue").click()
    problems = page.locator("#wizard-problems").inner_text()
    assert "Identity — Name: This field is required." in problems
    assert "Identity — Run as user account: Choose the user account the agent runs as." in problems
    assert _current(page) == "2 Identity" and page.get_by_label("Run as user account").is_visible()

    page.get_by_label("Name").fill("wizard-agent")
    page.get_by_label("New agent identity (its own credentials, fixed permissions)").check()
    page.get_by_role("button", name="Continue").click()
    assert _current(page) == "3 Scope" and page.locator("#wizard-problems").count() == 0
    page.get_by_role("button", name="Continue").click()
    assert _current(page) == "4 Sponsors and owners"
    page.get_by_role("button", name="Back").click()
    assert _current(page) == "3 Scope"
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Continue").click()
    assert _current(page) == "5 Details"
    page.get_by_role("button", name="Review").click()
    page.wait_for_selector("text=Review and create")
    assert not Agent.objects.filter(name="wizard-agent").exists()
    page.get_by_role("button", name="Create agent").click()
    page.wait_for_selector("#client-secret")
    assert Agent.objects.get(name="wizard-agent").identity_type == "agent_identity"
