"""Permission-matrix cases for removing an access package (docs/blast-radius.md; docs/design.md, R29): the
workspace's owners (explicit and inherited) and Global Administrators see what stops and remove it; a contributor
gets 403, someone of another workspace 404. The POST without a reason shows the form again (200, nothing changes);
with one it removes the package and redirects (302)."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _url(w) -> str:
    return reverse("package-remove", args=[w.package.pk])


CONFIRM = expect(LOGIN, 403, 200, 200, 200, 404)

CASES = [
    Case("package-remove", "GET", _url, CONFIRM, label="package-remove confirmation with what stops"),
    Case("package-remove", "POST", _url, CONFIRM, label="package-remove without a reason (refused: the form again)"),
    Case("package-remove", "POST", _url, expect(LOGIN, 403, 302, 302, 302, 404), data=lambda w: {"reason": "matrix"},
         label="package-remove with a reason"),
]
