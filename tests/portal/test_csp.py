"""The Content-Security-Policy header (django-csp): every page is served with the strict policy, and the templates
give it nothing to refuse (no inline script, style or event handler). tests/browser/test_csp_browser.py loads the
key pages in Chromium and fails on any violation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db
STRICT = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "object-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'", "form-action": "'self'",
}


def _directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().split(" ", 1) for part in header.split(";") if part.strip())


@pytest.mark.parametrize("path", ["/accounts/login/", "/", "/agents/", "/governance/policies/", "/no-such-page/",
                                  "/api/v1/agents/"])
def test_pages_carry_the_strict_content_security_policy(client, world, path):
    client.force_login(world.ga)
    assert _directives(client.get(path)) == STRICT


def test_the_api_docs_page_keeps_the_strict_policy_and_loads_its_script_from_a_file(client, world):
    client.force_login(world.ga)
    page = client.get("/api/docs/")
    assert page.status_code == 200 and _directives(page) == STRICT
    html = page.content.decode()
    assert "<style" not in html and not re.search(r"<script>\s*\S", html)
    [script_url] = re.findall(r'<script src="([^"]*\?[^"]*script=[^"]*)"', html)
    script = client.get(script_url.replace("&amp;", "&"))
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


INLINE = re.compile(r"""<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=["']|\son[a-z]+=["']|javascript:""", re.I)


def test_no_template_has_inline_script_style_or_event_handlers():
    offenders = [f"{path.relative_to(settings.BASE_DIR)}: {match.group(0)!r}"
                 for path in sorted((Path(settings.BASE_DIR) / "templates").rglob("*.html"))
                 for match in INLINE.finditer(path.read_text())]
    assert offenders == []
