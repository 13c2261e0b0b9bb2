"""In Chromium: a sponsor requests an access package for 2 hours, an owner approves it, and the agent's page shows
the permission with its end time (R17, R18)."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agents import registry
from governance.access import services as access_packages
from governance.access.models import Assignment
from portal.models import Permission
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"




@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r18_browser_sponsor_requests_two_hours_owner_approves_agent_shows_the_end(live_server, browser, catalog):
    olga, oscar, sam = (UserFactory(username=n) for n in ("olga", "oscar", "sam"))
    workspace = make_workspace("alpha", owners=[olga, oscar], contributors=[sam])
    blueprint = make_blueprint("ResponderAgent", permissions=("User.Read.All",))
    registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        blueprint, "resp-agent", sponsors=[sam], owners=[oscar]))
    access_packages.package_save(
        actor=olga, workspace=workspace, name="Incident responder",
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"),
        policy={"approver_kind": "workspace_owners", "duration_kind": "hours", "duration_value": 8})
    base = live_server.url

    sponsor = browser.new_context().new_page()
    sign_in(sponsor, base, "sam")
    sponsor.goto(f"{base}/governance/access-packages/")
    sponsor.get_by_role("link", name="Incident responder").click()
    sponsor.get_by_label("Agent").fill("resp-agent")
    sponsor.get_by_label("For how many hours (optional)").fill("2")
    sponsor.get_by_label("Justification").fill("Contain incident 4711")
    sponsor.get_by_role("button", name="Request").click()
    sponsor.wait_for_selector("#assignment-status:has-text('Pending approval')")

    owner = browser.new_context().new_page()
    sign_in(owner, base, "olga")
    owner.goto(f"{base}/governance/access-packages/")
    owner.locator("#approver-inbox").get_by_role("link", name="Incident responder → resp-agent").click()
    owner.get_by_role("button", name="Approve").click()
    owner.wait_for_selector("#assignment-status:has-text('Active')")

    assignment = Assignment.objects.get(agent__name="resp-agent")
    assert timedelta(hours=1, minutes=59) < assignment.expires_at - assignment.starts_at <= timedelta(hours=2)
    sponsor.goto(f"{base}/agents/{assignment.agent_id}/")
    row = sponsor.locator('tr[data-grant="SecurityIncident.ReadWrite.All"]')
    assert "Access package Incident responder" in row.inner_text()
    assert row.locator("[data-ends]").inner_text() == timezone.localtime(assignment.expires_at).strftime(
        "%Y-%m-%d %H:%M %Z")  # every time shown with its zone
    ARTIFACTS.mkdir(exist_ok=True)
    sponsor.screenshot(path=str(ARTIFACTS / "r18-package-on-agent.png"), full_page=True)
