"""Permission-matrix cases for the evidence of use per permission in access reviews (docs/design.md, R32).

Keeping or removing one permission of an item, and accepting an item's per-permission recommendation, are for the
item's reviewers (the matrix's owner sponsors the reviewed agent); other people who see the review get 403, people
who cannot see it 404.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

REVIEWERS = expect(LOGIN, 403, 302, 403, 403, 404)


def _url(w) -> str:
    return reverse("review-permissions", args=[w.review_item.pk])


CASES = [
    Case("review-permissions", "POST", _url, REVIEWERS, label="review keep one permission",
         data=lambda w: {"permission": w.review_item.permissions.get().pk, "decision": "keep"}),
    Case("review-permissions", "POST", _url, REVIEWERS, label="review accept the recommendation per permission",
         data=lambda w: {"accept_advice": "1"}),
]
