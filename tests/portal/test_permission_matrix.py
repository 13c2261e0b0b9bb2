"""Every view × every persona: forbidden objects are 404, forbidden actions 403 (docs/design.md)."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tests.conftest import PERSONAS
from tests.permission_matrix import CASES, EXEMPT_NAMESPACES, LOGIN


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_permission_matrix(client, approval_world, case, persona):
    world = approval_world
    user = world.persona(persona)
    if user is not None:
        client.force_login(user)
    url = case.url(world)
    response = client.generic(case.method, url, data=_encode(case.data(world)),
                              content_type="application/x-www-form-urlencoded")
    expected = case.expected[persona]
    if persona == "anonymous" and url.startswith("/api/") and expected == 403:
        expected = 401  # the API challenges an anonymous caller (WWW-Authenticate: Bearer); pages redirect to sign in
    if expected == LOGIN:
        assert response.status_code == 302, f"{case.id} as {persona}: {response.status_code}"
        assert response["Location"].startswith("/accounts/login/"), response["Location"]
    else:
        assert response.status_code == expected, (
            f"{case.id} as {persona}: expected {expected}, got {response.status_code}"
        )
        if expected == 302:
            assert not response["Location"].startswith("/accounts/login/")


def _encode(data: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(data)


def _url_names(patterns, namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            ns = pattern.namespace or namespace
            yield from _url_names(pattern.url_patterns, ns)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace, pattern.name


def test_every_view_is_in_the_permission_matrix():
    covered = {c.url_name for c in CASES}
    missing = {
        name for namespace, name in _url_names(get_resolver().url_patterns)
        if namespace not in EXEMPT_NAMESPACES and name not in covered
    }
    assert not missing, f"views missing from tests/permission_matrix.py: {sorted(missing)}"
