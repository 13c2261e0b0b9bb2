"""Shared steps of the browser tests."""

from tests.factories import PASSWORD


def sign_in(page, base: str, username: str) -> None:
    """Sign in through the login form and wait for the dashboard."""
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
