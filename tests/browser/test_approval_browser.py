"""In Chromium, two people: a contributor imports a partner manifest that reads Defender data and asks for
approval; a Global Administrator opens the link and approves; the contributor completes setup (R14–R16)."""

from pathlib import Path

import pytest

from agents import catalog as skills
from agents.models import Agent
from governance.approvals.models import ApprovalRequest
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, grant_role, make_workspace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MANIFEST = ROOT / "devkit" / "demo" / "data" / "TaniumDefenderTriageAgent.yaml"




@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r16_browser_partner_agent_approved_by_a_global_administrator(live_server, browser, catalog):
    skills.load_skills()
    carl = UserFactory(username="carl")
    make_workspace("alpha", owners=[UserFactory(username="olga"), UserFactory(username="oscar")], contributors=[carl])
    grant_role(UserFactory(username="gina"), "global-administrator")
    base = live_server.url

    contributor = browser.new_context().new_page()
    sign_in(contributor, base, "carl")
    contributor.goto(f"{base}/agents/blueprints/")
    contributor.set_input_files("input[name=manifest]", str(MANIFEST))
    contributor.get_by_role("button", name="Import").click()
    contributor.wait_for_selector("text=Tanium Endpoint & Defender Triage Agent")

    contributor.goto(f"{base}/agents/new/")
    assert "until a Global Administrator approves" in contributor.locator("[data-notice]").first.inner_text()
    contributor.get_by_role("link", name="Use Tanium Endpoint & Defender Triage Agent").click()
    contributor.get_by_label("Name").fill("tanium-triage")
    contributor.get_by_label("Run as user account").fill("carl")
    for _step in ("Identity", "Scope", "Sponsors and owners"):  # the wizard's steps, each its own page
        contributor.get_by_role("button", name="Continue").click()
    contributor.get_by_label("Justification").fill("Correlate Defender incidents with Tanium endpoint data")
    contributor.get_by_role("button", name="Review").click()
    contributor.get_by_role("button", name="Create agent").click()
    contributor.wait_for_selector("text=waits for a Global Administrator's approval")
    note = contributor.locator("[data-note]")
    assert "Waiting for a Global Administrator" in note.inner_text()
    approval_link = note.get_by_role("link", name="Open").get_attribute("href")

    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())
    sign_in(admin, base, "gina")
    admin.goto(f"{base}{approval_link}")
    assert "SecurityIncident.Read.All" in admin.locator("#approval-permissions").inner_text()
    assert "Correlate Defender incidents" in admin.locator("#justification").inner_text()
    admin.get_by_role("button", name="Approve this permission set").click()
    admin.wait_for_selector("#approval-status:has-text('Approved')")

    contributor.reload()
    assert "Approved by gina" in contributor.locator("[data-note]").inner_text()
    contributor.get_by_role("button", name="Complete setup").click()
    contributor.wait_for_selector("text=tanium-triage is active")
    ARTIFACTS.mkdir(exist_ok=True)
    contributor.screenshot(path=str(ARTIFACTS / "r16-partner-agent-active.png"), full_page=True)

    agent = Agent.objects.get(name="tanium-triage")
    assert agent.status == "active" and agent.blueprint.publisher_kind == "partner"
    assert ApprovalRequest.objects.get(agent=agent).decided_by.username == "gina"
