"""In Chromium: an administrator replays a report-only policy over the recorded sign-ins, drills into a day, and
turns the policy on through its replay (docs/policy-replay.md). ``POLICY_REPLAY_SCREENSHOT`` names a file to keep
the replay page's picture in (docs/screenshots/policy-replay.png is made this way)."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.signin import partitions
from governance.signin.models import SignIn
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint, make_workspace

AGENTS = ("invoice-triage", "dlp-responder", "ticket-summariser", "threat-hunter")


def _history(agents) -> None:
    """Two weeks of sign-ins: most from the office network, some from elsewhere, a few on a weekend."""
    now = timezone.now()
    partitions.create_days((now - timedelta(days=15)).date(), now.date())
    rows = []
    for day in range(14):
        for index, agent in enumerate(agents):
            for n in range(6 + (day * 3 + index * 5) % 9):
                outside = (n + day + index) % (3 + index) == 0
                rows.append(SignIn(
                    at=now - timedelta(days=day, minutes=7 * n + index), agent=agent, client_id=f"client-{index}",
                    actor_kind="agent", ip=f"203.0.113.{n + 1}" if outside else f"10.20.{index}.{n + 1}",
                    grant_type="client_credentials", outcome="success", credential_type="secret",
                    granted_scopes=["User.Read.All"]))
    SignIn.objects.bulk_create(rows)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r29_replay_an_administrator_previews_and_turns_on_a_policy(live_server, browser, catalog):
    owner = UserFactory(username="olga")
    workspace = make_workspace("alpha", owners=[owner, UserFactory(username="oscar")])
    admin = UserFactory(username="sam")
    grant_role(admin, "global-administrator")
    blueprint = make_blueprint("ReplayAgent", permissions=("User.Read.All",))
    agents = [registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        blueprint, name, sponsors=[owner], owners=[owner])).agent for name in AGENTS]
    _history(agents)
    policy = conditional_access.policy_save(actor=admin, data={
        "name": "Office network only", "description": "Agents get tokens only from the office network.",
        "state": "report_only", "grant": "allow", "all_agents": True, "ip_ranges": ["10.20.0.0/16"]})

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/governance/policies/")
    page.locator(f'tr[data-policy="{policy.name}"]').get_by_role("link", name="Replay").click()
    page.get_by_role("link", name="Last 30 days").click()
    summary = page.locator("#replay-summary")
    assert "would have blocked" in summary.inner_text()
    assert page.locator('figure[data-chart="policy-replay"] svg rect').count() > 5
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the replay page is {overflow} px wider than the window"
    if os.environ.get("POLICY_REPLAY_SCREENSHOT"):
        page.screenshot(path=os.environ["POLICY_REPLAY_SCREENSHOT"], full_page=True)

    # a day: the sign-ins behind it, each from outside the office network
    first_day = page.locator("#replay-days tbody tr th a").first
    first_day.click()
    rows = page.locator("#replay-sign-ins tbody tr")
    assert rows.count() > 0
    assert all(text.startswith("203.0.113.") for text in page.locator("#replay-sign-ins tbody td.mono:nth-child(4)")
               .all_inner_texts())

    # turning it on shows the last 7 days first, then it is on
    page.get_by_role("link", name="Turn on…").click()
    assert "In the last 7 days this policy would have blocked" in page.locator("#replay-summary").inner_text()
    page.get_by_role("button", name=f"Turn on {policy.name}").click()
    page.wait_for_url(f"{live_server.url}/governance/policies/")
    assert ConditionalAccessPolicy.objects.get(pk=policy.pk).state == "on"
    page.close()
