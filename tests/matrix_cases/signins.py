"""Permission-matrix cases for this capability (appended to ``tests.permission_matrix.CASES``).

The sign-in log is open to sign-in readers (every row) and workspace owners (their workspaces' agents' rows):
the owner of beta sees the page too, with beta's rows only; a contributor who owns nothing gets 403.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

SIGNIN_READERS = expect(LOGIN, 403, 200, 200, 200, 200)
#: A large export is its requester's alone (here the Global Administrator's): other readers get 404.
REQUESTER_ONLY = expect(LOGIN, 403, 404, 404, 200, 404)


def _export(w):
    from datetime import timedelta

    from django.utils import timezone

    from governance.signin.models import SignInExport

    return SignInExport.objects.create(requested_by=w.ga, expires_at=timezone.now() + timedelta(hours=1)).pk

CASES: list = [
    Case("signin-list", "GET", lambda w: reverse("signin-list"), SIGNIN_READERS),
    Case("signin-list", "GET", lambda w: reverse("signin-list") + "?outcome=success&from=2020-01-01",
         SIGNIN_READERS, label="signin-list filtered"),
    Case("signin-export", "GET", lambda w: reverse("signin-export") + "?format=csv", SIGNIN_READERS,
         label="signin-export csv"),
    Case("signin-export", "GET", lambda w: reverse("signin-export") + "?format=json", SIGNIN_READERS,
         label="signin-export json"),
    Case("signin-export-start", "POST", lambda w: reverse("signin-export-start"),
         expect(LOGIN, 403, 302, 302, 302, 302), data=lambda w: {"outcome": "failure", "format": "csv"}),
    Case("signin-export-job", "GET", lambda w: reverse("signin-export-job", args=[_export(w)]), REQUESTER_ONLY),
    # a queued export has no file yet: 410 with the reason, for its requester
    Case("signin-export-download", "POST", lambda w: reverse("signin-export-download", args=[_export(w)]),
         expect(LOGIN, 403, 404, 404, 410, 404)),
]
