"""In Chromium: import a fixture manifest, set up an agent with a new agent identity, find it in the registry,
rotate its secret, retire it, and see on its page that no credential is active (R3, R5)."""

from pathlib import Path

import pytest

from agents import catalog as skills
from agents.models import Agent, Credential
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, grant_role, make_workspace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
MANIFEST = ROOT / "agents" / "data" / "manifests" / "DLPIncidentResponseAgent.yaml"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r5_browser_import_setup_rotate_retire_leaves_no_active_credential(live_server, page, catalog_seed):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    grant_role(alice, "global-administrator")  # only a Global Administrator imports as Microsoft-published
    make_workspace("alpha", owners=[alice, bob])
    page.on("dialog", lambda dialog: dialog.accept())  # the confirm() before rotating

    sign_in(page, live_server.url, "alice")

    page.goto(f"{live_server.url}/agents/blueprints/")
    page.set_input_files("input[name=manifest]", str(MANIFEST))
    page.get_by_role("button", name="Import").click()
    page.wait_for_selector("text=ready to set up")

    page.goto(f"{live_server.url}/agents/new/")
    page.get_by_role("link", name="Use Data Loss Prevention Incident Response Agent").click()
    page.get_by_label("Name").fill("dlp-responder")
    page.get_by_label("New agent identity (its own credentials, fixed permissions)").check()
    for _step in ("Identity", "Scope", "Sponsors and owners"):  # the wizard's steps, each its own page
        page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Review").click()
    page.get_by_role("button", name="Create agent").click()
    first_secret = page.locator("#client-secret").inner_text()
    assert first_secret.startswith("aip_")
    page.get_by_role("link", name="I have stored it — go to the agent").click()

    page.goto(f"{live_server.url}/agents/?q=dlp")
    assert page.locator('tr[data-agent="dlp-responder"]').count() == 1
    page.get_by_role("link", name="dlp-responder").click()
    assert "SecurityAlert.Read.All" in page.locator("#permissions-table").inner_text()

    page.get_by_role("button", name="Rotate secret").click()
    second_secret = page.locator("#client-secret").inner_text()
    assert second_secret.startswith("aip_") and second_secret != first_secret
    page.get_by_role("link", name="I have stored it — go to the agent").click()
    assert page.locator('tr[data-credential-state="active"]').count() == 2

    page.get_by_role("link", name="Retire…").click()
    assert "2 active client secrets revoked" in page.locator("#retire-list").inner_text()
    page.get_by_role("button", name="Retire dlp-responder").click()
    page.wait_for_selector("text=is retired")
    assert page.locator('tr[data-credential-state="active"]').count() == 0
    assert "0 active credentials" in page.locator("#active-credentials").inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "r5-retired-agent.png"), full_page=True)
    agent = Agent.objects.get(name="dlp-responder")
    assert agent.status == "retired"
    assert not [c for c in Credential.objects.filter(identity__agent=agent) if c.is_active()]


@pytest.fixture
def catalog_seed(catalog):
    """The permission catalog (the shared ``catalog`` fixture) plus the skills list the importer maps with."""
    skills.load_skills()
