"""In Chromium: a run of the Agent Hygiene Agent with an input outside its declared type or limits is refused on the
form, next to the field, in words (the input's label, what it takes, what was typed); no run, token or audit event
is recorded. A good value then starts the run."""

from __future__ import annotations

import pytest

from agents import registry
from agents.models import Blueprint
from governance.runs import builtin as builtin_agents
from governance.runs import services as runs
from governance.runs.models import Run
from governance.signin.models import AccessToken, SignIn
from portal.models import AuditEvent
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_run_inputs_are_validated_by_their_declared_type_before_anything_is_queued(live_server, browser,
                                                                                          catalog):
    olga, cora = UserFactory(username="olga"), UserFactory(username="cora")
    workspace = make_workspace("alpha", owners=[olga, UserFactory(username="oscar")], contributors=[cora])
    builtin_agents.install()
    blueprint = Blueprint.objects.filter(name="AgentHygieneAgent").latest("version")
    agent = registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        blueprint, "hygiene", sponsors=[olga], owners=[olga])).agent
    session = runs.session_open(actor=cora, agent=agent, title="Clean-up")
    counts = (Run.objects.count(), SignIn.objects.count(), AccessToken.objects.count(), AuditEvent.objects.count())

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, "cora")
    page.goto(f"{live_server.url}/sessions/{session.pk}/")
    field = page.get_by_label("Secrets expiring within (days)")
    for value in ("abc", "999"):
        field.fill(value)
        page.get_by_role("button", name="Run", exact=True).click()
        page.wait_for_load_state()
        error = page.locator("#run-form .invalid-feedback")
        assert error.inner_text() == (f"Secrets expiring within (days) must be a whole number from 1 to 365 "
                                      f"(you entered “{value}”).")
        assert page.get_by_label("Secrets expiring within (days)").input_value() == value  # kept to correct
        counts_now = (Run.objects.count(), SignIn.objects.count(), AccessToken.objects.count(),
                      AuditEvent.objects.count())
        assert counts_now == counts
        field = page.get_by_label("Secrets expiring within (days)")
    assert "ExpiringWithinDays" not in page.locator("main").inner_text()

    field.fill("45")
    page.get_by_role("button", name="Run", exact=True).click()
    page.wait_for_selector("text=is queued")
    assert Run.objects.get().inputs == {"ExpiringWithinDays": "45"}
