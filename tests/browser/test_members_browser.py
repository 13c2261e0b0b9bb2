"""In Chromium: sign in, switch workspace, try to demote the second-to-last owner, see the refusal (R12)."""

from pathlib import Path

import pytest

from portal.models import WorkspaceMembership
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, make_workspace

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_r12_browser_demotion_of_second_to_last_owner_is_refused(live_server, page, catalog):
    alice, bob, carol = (UserFactory(username=n) for n in ("alice", "bob", "carol"))
    make_workspace("alpha", owners=[alice, bob])
    beta = make_workspace("beta", owners=[alice, carol], contributors=[UserFactory(username="dave")])

    sign_in(page, live_server.url, "alice")
    assert "Workspace Alpha" in page.locator("main").inner_text()

    page.select_option("#workspace-select", "beta")  # submits itself
    page.wait_for_function("document.querySelector('main').innerText.includes('Workspace Beta')")

    page.get_by_role("link", name="Members").click()
    page.wait_for_url(f"{live_server.url}/workspaces/beta/members/")
    page.get_by_role("link", name="Make carol a contributor").click()  # a confirmation page says what changes
    page.get_by_role("button", name="Make carol a contributor").click()
    alert = page.locator(".alert-danger")
    alert.wait_for()
    assert "Refused: Beta would be left with fewer than 2 effective owners" in alert.inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "r12-demotion-refused.png"), full_page=True)
    assert WorkspaceMembership.objects.get(workspace=beta, user=carol).role == "owner"
