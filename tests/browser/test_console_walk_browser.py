"""In Chromium, as the Global Administrator and as a workspace owner: every main page loads without a console error
and without a failed request (no 404 for an icon, a stylesheet or a script; no refused inline script or style)."""

from __future__ import annotations

import pytest

from agents import registry
from agents.models import Agent
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint, make_workspace

PAGES = ("/", "/agents/", "/agents/{agent}/", "/agents/{agent}/retire/", "/agents/new/", "/agents/bulk/",
         "/sessions/", "/governance/approvals/", "/governance/access-packages/", "/governance/reviews/",
         "/governance/policies/", "/governance/sign-ins/", "/governance/risk/", "/workspaces/",
         "/notifications/", "/audit/", "/jobs/", "/api/docs/")


def _walk(page, base: str, agent: Agent) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"{page.url}: console: {m.text}"))
    page.on("requestfailed", lambda r: problems.append(f"{page.url}: failed: {r.url}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{page.url}: {r.status} {r.url}"))
    for path in PAGES:
        response = page.goto(base + path.format(agent=agent.pk))
        page.wait_for_load_state("networkidle")
        if response.status == 403:  # a page this persona may not open is not a console fault; note it apart
            problems[:] = [p for p in problems if not p.endswith(f"403 {base}{path.format(agent=agent.pk)}")]
    return problems


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["ga", "olga"])
def test_browser_pages_have_no_console_error_or_failed_request(live_server, browser, catalog, persona):
    olga, ga = UserFactory(username="olga"), UserFactory(username="ga")
    grant_role(ga, "global-administrator")
    workspace = make_workspace("alpha", owners=[olga, UserFactory(username="oscar")])
    blueprint = make_blueprint("WalkAgent", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        blueprint, "walker", sponsors=[olga], owners=[olga])).agent

    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, live_server.url, persona)
    assert _walk(page, live_server.url, agent) == []
