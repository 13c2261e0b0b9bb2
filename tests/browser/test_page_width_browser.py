"""In Chromium at 1280 and 1024 px, as a Global Administrator and as a workspace owner: no page is wider than the
window (``document.documentElement.scrollWidth > window.innerWidth`` fails). Wide tables scroll inside their own
container (``overflow-x: auto``); the page itself never does. The header's user menu stays on one line, and at
1280 px the whole header is one line.

The pages are the URL walk's (``tests/portal/test_url_walk.py``): every pattern with the real ids of the permission
matrix's cases."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Error as PlaywrightError

from tests.portal.test_url_walk import _urls, walk_world  # noqa: F401  (the walk's world and its URLs)

#: Pages whose layout is being reworked separately; while they still overflow, the test says so as an expected
#: failure instead of hiding other pages' problems.
REWORKED_ELSEWHERE = ("/governance/sign-ins/", "/audit/")
OVERFLOW = "() => [document.documentElement.scrollWidth, window.innerWidth]"
MENU_LINES = """() => { const s = document.querySelector('.user-menu summary');
  if (!s) return 1; const style = getComputedStyle(s);
  return Math.round(s.getBoundingClientRect().height / parseFloat(style.lineHeight || 20)); }"""
#: The header's rows: every link, the workspace picker, the counts and the user menu share one top edge band.
HEADER_ROWS = """() => { const items = [...document.querySelectorAll(
    '.portal-header .navbar-brand, .portal-header .nav-item, #workspace-switcher, .portal-header .navbar > .nav-link,'
    + ' .user-menu summary')];
  const middles = items.map(e => { const r = e.getBoundingClientRect(); return (r.top + r.bottom) / 2; });
  return Math.max(...middles) - Math.min(...middles) < 12 ? 1 : 2; }"""


def _session_cookie(user) -> dict:
    client = Client()
    client.force_login(user)
    return {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value}


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("persona", ["global_admin", "owner"])
def test_browser_no_page_is_wider_than_the_window_at_1280_and_1024(live_server, browser, walk_world, persona):  # noqa: F811
    w = walk_world
    real, _missing, _unfilled = _urls(w)
    pages = sorted({url for url in real if not url.startswith(("/api/", "/oauth/", "/.well-known/", "/accounts/"))
                    and not url.endswith((".csv", ".json", "/export/"))})
    cookie = _session_cookie(w.persona(persona))
    wide, reworked, menus = [], [], []
    for width in (1280, 1024):
        context = browser.new_context(viewport={"width": width, "height": 900})
        context.add_cookies([{**cookie, "url": live_server.url}])
        page = context.new_page()
        for url in pages:
            try:
                response = page.goto(live_server.url + url)
            except PlaywrightError:  # an answer with no page (a 405 with no body): nothing to measure
                continue
            if response is None or response.status != 200 or "text/html" not in response.headers.get(
                    "content-type", ""):
                continue
            scroll, inner = page.evaluate(OVERFLOW)
            if scroll > inner:
                (reworked if url.startswith(REWORKED_ELSEWHERE) else wide).append(
                    f"{url} at {width} px: {scroll} px wide")
            if width == 1280 and url == "/" and page.evaluate(MENU_LINES) > 1:
                menus.append(f"the user menu wraps at {width} px")
            if width == 1280 and url == "/" and page.evaluate(HEADER_ROWS) > 1:
                menus.append(f"the header takes two lines at {width} px")
        context.close()
    assert not wide and not menus, "pages wider than the window:\n" + "\n".join(wide + menus)
    if reworked:
        pytest.xfail("pages being reworked elsewhere still overflow: " + "; ".join(reworked))
