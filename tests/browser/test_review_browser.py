"""In Chromium (R19): a sponsor opens their review inbox and accepts the recommendations, the owner closes the review
early, and the assignment the recommendation denied (its agent idle for 45 days) is revoked."""

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agents import registry
from governance.access import services as access_packages
from governance.access.models import Assignment
from governance.reviews.campaigns import review_create
from governance.signin.models import SignIn
from portal.models import AuditEvent, Permission
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"




@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r19_browser_sponsor_accepts_recommendations_owner_closes_early_denied_access_is_revoked(
        live_server, browser, catalog):
    olga, oscar, sam = (UserFactory(username=n) for n in ("olga", "oscar", "sam"))
    workspace = make_workspace("alpha", owners=[olga, oscar], contributors=[sam])
    blueprint = make_blueprint("ReviewedAgent", permissions=("User.Read.All",))
    busy, idle = (registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        blueprint, name, sponsors=[sam], owners=[oscar])).agent for name in ("busy-agent", "idle-agent"))
    package = access_packages.package_save(
        actor=olga, workspace=workspace, name="Incident responder",
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"),
        policy={"approver_kind": "none", "justification_required": False})
    for agent in (busy, idle):
        access_packages.assignment_request(actor=sam, package=package, agent=agent)
    now = timezone.now()
    for agent, days in ((busy, 2), (idle, 45)):  # their last use (a successful sign-in: governance.usage)
        SignIn.objects.create(agent=agent, at=now - timedelta(days=days), client_id=agent.identity.client_id,
                              outcome="success", granted_scopes=["SecurityIncident.ReadWrite.All"])
    campaign = review_create(actor=olga, workspace=workspace, name="Responder review",
                             scope_kind="packages", packages=[package], reviewer_kind="sponsors",
                             starts_at=now - timedelta(hours=1), duration_days=14, no_response="keep")
    base = live_server.url

    sponsor = browser.new_context().new_page()
    sign_in(sponsor, base, "sam")
    sponsor.locator('[data-header-count="Reviews"]').click()  # "Reviews 2" in the header
    sponsor.locator("#review-inbox").get_by_role("link", name="Responder review").click()
    idle_card = sponsor.locator('[data-item="idle-agent"]')
    assert "Deny" in idle_card.locator("[data-recommendation]").inner_text()
    assert "Unused for 45 days" in idle_card.inner_text()
    sponsor.once("dialog", lambda dialog: dialog.accept())
    sponsor.get_by_role("button", name="Accept recommendations").click()
    sponsor.wait_for_selector("text=Accepted the recommendation for 2 item(s).")
    assert "Deny" in sponsor.locator('[data-item="idle-agent"] [data-decision]').inner_text()
    assert "Approve" in sponsor.locator('[data-item="busy-agent"] [data-decision]').inner_text()
    assert sponsor.locator('[data-header-count="Reviews"]').count() == 0

    owner = browser.new_context().new_page()
    sign_in(owner, base, "olga")
    owner.goto(f"{base}/governance/reviews/")
    owner.locator("#reviews-table").get_by_role("link", name="Responder review").click()
    owner.once("dialog", lambda dialog: dialog.accept())
    owner.get_by_role("button", name="Close early").click()
    owner.wait_for_selector("#instance-status:has-text('Results applied')")
    assert owner.locator('[data-count="removed"]').inner_text() == "1"
    assert "revoked" in owner.locator('tr[data-item="idle-agent"] [data-result]').inner_text()

    assert Assignment.objects.get(agent=idle).status == "revoked"
    assert Assignment.objects.get(agent=busy).status == "active"
    assert AuditEvent.objects.filter(action="assignment.revoke", actor_kind="system").count() == 1
    assert campaign.instances.get().closed_by == olga
    ARTIFACTS.mkdir(exist_ok=True)
    owner.screenshot(path=str(ARTIFACTS / "r19-review-results.png"), full_page=True)
