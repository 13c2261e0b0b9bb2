"""In Chromium: an agent gets a token over HTTP; a Security Administrator finds the request in the sign-in log,
opens the agent's risk page and confirms it compromised; at the next introspection the token is inactive (R21, R22).
"""

from pathlib import Path

import pytest
import requests

from agents import registry
from governance.signin import tokens
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint, make_workspace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r21_browser_admin_confirms_a_compromise_and_the_token_dies(live_server, browser, catalog):
    olga, oscar = UserFactory(username="olga"), UserFactory(username="oscar")
    workspace = make_workspace("alpha", owners=[olga, oscar])
    grant_role(UserFactory(username="sam"), "security-administrator")
    agent = registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        make_blueprint("BrowserAgent", permissions=("User.Read.All",)), "browser-agent", sponsors=[olga],
        owners=[oscar])).agent
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    server, server_secret = tokens.resource_server_create(actor=None, name="Browser RS")
    base = live_server.url

    issued = requests.post(f"{base}/oauth/token/", data={"grant_type": "client_credentials"},
                           auth=(credential.identity.client_id, secret), timeout=10)
    assert issued.status_code == 200, issued.text
    value = issued.json()["access_token"]

    def introspect() -> dict:
        return requests.post(f"{base}/oauth/introspect/", data={"token": value},
                             auth=(server.client_id, server_secret), timeout=10).json()

    assert introspect()["active"] is True

    admin = browser.new_context().new_page()
    admin.on("dialog", lambda dialog: dialog.accept())
    sign_in(admin, base, "sam")
    admin.goto(f"{base}/governance/sign-ins/?agent=browser-agent")
    row = admin.locator("#signins-table tbody tr").first
    assert "browser-agent" in row.inner_text() and "Success" in row.inner_text()
    assert "User.Read.All" in row.inner_text()

    admin.goto(f"{base}/governance/risk/{agent.pk}/")
    admin.get_by_label("Why").fill("Secret found in a public repository")
    admin.get_by_role("button", name="Confirm compromised").first.click()
    admin.wait_for_selector("text=Confirmed compromised")
    ARTIFACTS.mkdir(exist_ok=True)
    admin.screenshot(path=str(ARTIFACTS / "r21-confirmed-compromised.png"), full_page=True)
    assert "High" in admin.locator("h1").inner_text()

    assert introspect() == {"active": False}
