"""Browser tests drive Debian's Chromium through Playwright (browsers cannot be downloaded here)."""

import os
import shutil

import pytest
from django.test import override_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"],
    }


@pytest.fixture(scope="session", autouse=True)
def _allow_orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread; the ORM calls in the test stay synchronous.

    Session-scoped so it is set before the browser starts; pytest-django runs these transactional tests last.
    """
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # The live server's middleware is built once per session, before function-scoped settings apply: plain HTTP.
    plain_http = override_settings(SECURE_SSL_REDIRECT=False)
    plain_http.enable()
    yield
    plain_http.disable()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
