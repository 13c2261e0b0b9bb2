"""In Chromium: an owner names a colleague sponsor; the colleague opens the notification, accepts, and the agent is
sponsored by them (R30; docs/sponsorship.md)."""

import pytest

from agents import policy, registry
from agents.models import Sponsorship
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r30_browser_a_sponsor_accepts_from_the_notification(live_server, browser, catalog):
    olga, oscar, sam = UserFactory(username="olga"), UserFactory(username="oscar"), UserFactory(username="sam")
    alpha = make_workspace("alpha", owners=[olga, oscar], contributors=[sam])
    blueprint = make_blueprint("SponsoredAgent", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=olga, workspace=alpha, spec=agent_spec(
        blueprint, "needs-a-sponsor", sponsors=[olga], owners=[oscar])).agent
    registry.agent_person_add(actor=olga, agent=agent, user=sam, role=policy.SPONSOR_AGENT)
    base = live_server.url

    page = browser.new_context().new_page()
    sign_in(page, base, "sam")
    page.goto(f"{base}/notifications/")
    page.get_by_role("link", name="You are asked to sponsor needs-a-sponsor").click()
    assert "Waiting for an answer" in page.locator("#sponsorship-state").inner_text()
    page.get_by_role("button", name="Accept: I sponsor needs-a-sponsor").click()
    page.wait_for_selector("text=You now sponsor needs-a-sponsor.")
    row = page.locator("#current-sponsorships [data-sponsorship='needs-a-sponsor']")
    assert "Accepted" in row.inner_text()
    assert Sponsorship.objects.get(agent=agent, user=sam).state == "accepted"

    page.goto(f"{base}/agents/{agent.pk}/")
    assert page.locator("[data-unsponsored]").count() == 0
    assert "Confirm again by" in page.locator("[data-sponsorship='sam']").inner_text()
