"""Permission-matrix cases for this capability (appended to ``tests.permission_matrix.CASES``).

The sign-in log is open to sign-in readers (every row) and workspace owners (their workspaces' agents' rows):
the owner of beta sees the page too, with beta's rows only; a contributor who owns nothing gets 403.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

SIGNIN_READERS = expect(LOGIN, 403, 200, 200, 200, 200)

CASES: list = [
    Case("signin-list", "GET", lambda w: reverse("signin-list"), SIGNIN_READERS),
    Case("signin-list", "GET", lambda w: reverse("signin-list") + "?outcome=success&from=2020-01-01",
         SIGNIN_READERS, label="signin-list filtered"),
    Case("signin-export", "GET", lambda w: reverse("signin-export") + "?format=csv", SIGNIN_READERS,
         label="signin-export csv"),
    Case("signin-export", "GET", lambda w: reverse("signin-export") + "?format=json", SIGNIN_READERS,
         label="signin-export json"),
]
