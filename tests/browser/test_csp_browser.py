"""In Chromium: the key pages, the API docs (Swagger UI) and an htmx swap run under the strict
Content-Security-Policy without a single violation (an inline style, script or handler would be refused and
reported), and a confirmation that used to be an inline onsubmit handler still asks first."""

from __future__ import annotations

import pytest

from governance.signin import tokens
from governance.signin.models import ResourceServer
from tests.browser.helpers import sign_in

# Every violation reaches the console twice: Chromium's own "Refused to …" error, and this listener's line.
REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_key_pages_load_without_any_content_security_policy_violation(live_server, browser, approval_world):
    w = approval_world
    server, _secret = tokens.resource_server_create(actor=None, name="Mail gateway")
    base = live_server.url
    context = browser.new_context()
    context.add_init_script(REPORT_VIOLATIONS)
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda message: violations.append(f"{page.url}: {message.text}")
            if "Content Security Policy" in message.text or "CSP violation" in message.text else None)

    sign_in(page, base, w.ga.username)
    for path in ("/", "/agents/", f"/agents/{w.agent.pk}/", "/governance/", "/governance/policies/",
                 "/governance/reviews/", f"/governance/reviews/{w.review.pk}/", "/sessions/", "/audit/", "/jobs/",
                 "/workspaces/", "/no-such-page/"):
        response = page.goto(f"{base}{path}")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_load_state("networkidle")

    page.goto(f"{base}/api/docs/")
    page.wait_for_selector(".swagger-ui .information-container", timeout=15000)  # the spec loaded and rendered
    page.wait_for_load_state("networkidle")

    page.goto(f"{base}/governance/tokens/resource-servers/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#resource-servers-table, table").get_by_role("button", name="Revoke").first.click()
    page.wait_for_load_state("networkidle")
    server.refresh_from_db()
    assert server.revoked_at is None  # dismissed: the data-confirm prompt replaced the inline onsubmit handler
    assert ResourceServer.objects.filter(revoked_at__isnull=True).count() == 1

    assert violations == []
