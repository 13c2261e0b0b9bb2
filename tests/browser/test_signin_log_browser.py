"""In Chromium at 1280 and 1024 px: the sign-in log fits the window, long client ids, resources, reasons and
policies included (docs/design.md, "The sign-in log at volume")."""

import pytest

from agents import registry
from governance.signin.models import SignIn
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint, make_workspace


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_sign_in_log_fits_the_window(live_server, browser, catalog):
    owner = UserFactory(username="olga")
    workspace = make_workspace("alpha", owners=[owner, UserFactory(username="oscar")])
    grant_role(UserFactory(username="sam"), "global-administrator")
    agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        make_blueprint("WideAgent", permissions=("User.Read.All",)), "a-rather-long-agent-name-" + "x" * 40,
        sponsors=[owner], owners=[owner])).agent
    long = "https://resource.example.com/" + "segment/" * 12
    SignIn.objects.bulk_create([SignIn(
        agent=agent, client_id="c" * 64, actor_kind="agent", outcome="failure",
        ip="2001:db8:ffff:ffff:ffff:ffff:ffff:1",
        grant_type="urn:ietf:params:oauth:grant-type:token-exchange", resource=long, error="invalid_scope",
        reason="The requested scope is not held by the agent through any assignment " * 3,
        requested_scopes=[f"Scope{i}.ReadWrite.All" for i in range(8)], credential_type="federated",
        credential_issuer="https://token.actions.githubusercontent.com/" + "tenant/" * 6,
        policies=[{"id": i, "name": f"Policy number {i} with a long name", "state": "report_only",
                   "outcome": "block", "reason": "outside the allowed network " * 3} for i in range(4)])
        for _ in range(5)])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    sign_in(page, live_server.url, "sam")
    for width in (1280, 1024):
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server.url}/governance/sign-ins/")
        assert page.locator("#signins-table tbody tr").count() == 5
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the sign-in log is {overflow} px wider than a {width} px window"
    page.locator("#signins-table details summary").first.click()  # the reason folds out in place
    assert page.locator("#signins-table details[open]").count() == 1
    page.close()
