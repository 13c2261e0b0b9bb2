"""The machine endpoints' short middleware chain (portal.middleware.MachineEndpointMiddleware; docs/design.md,
"Machine endpoints"): the OAuth token, introspection and revocation endpoints answer with the headers the full
chain would give them, without the browser middleware, and everything else still takes the full chain."""

from __future__ import annotations

import base64

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import OperationalError
from django.urls import reverse

from agents import registry
from governance.signin import oauth as signin_oauth
from governance.signin import tokens

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy",
                    "Cross-Origin-Opener-Policy")


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture
def agent_basic(registry_world) -> str:
    credential, secret = registry.credential_rotate(actor=None, agent=registry_world.agent)
    return _basic(credential.identity.client_id, secret)


def _token(client, authorization: str, **extra):
    return client.post(reverse("oauth-token"), "grant_type=client_credentials",
                       content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=authorization, **extra)


def test_the_token_endpoint_answers_with_the_security_headers_of_a_page(client, agent_basic):
    page = client.get(reverse("login"))
    response = _token(client, agent_basic, HTTP_X_REQUEST_ID="trace-42")
    assert response.status_code == 200, response.content
    for header in SECURITY_HEADERS:
        assert response.has_header(header), header
        assert response[header] == page[header], header
    assert response["X-Request-ID"] == "trace-42"
    assert response["Content-Length"] == str(len(response.content))  # as the full chain's CommonMiddleware sets it
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("name", ["oauth-token", "oauth-introspect", "oauth-revoke"])
def test_machine_endpoints_skip_the_browser_middleware(client, name):
    response = client.post(reverse(name), "", content_type="application/x-www-form-urlencoded")
    assert response.status_code in (400, 401)
    request = response.wsgi_request
    assert not hasattr(request, "session")  # no session middleware, so no session cookie either
    assert not hasattr(request, "user")
    assert not hasattr(request, "workspace")
    assert settings_cookie_names().isdisjoint(response.cookies)
    assert request.resolver_match.url_name == name
    assert response.has_header("X-Request-ID")


def settings_cookie_names() -> set[str]:
    from django.conf import settings

    return {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME}


def test_other_paths_take_the_full_chain(client):
    response = client.get(reverse("login"))
    assert hasattr(response.wsgi_request, "session")
    assert isinstance(response.wsgi_request.user, AnonymousUser)
    # Without the trailing slash the token path is not a machine endpoint: the full chain's slash redirect answers.
    assert client.post(reverse("oauth-token").rstrip("/")).status_code in (301, 308)


def test_a_lost_database_is_a_503_on_the_short_chain_too(client, agent_basic, monkeypatch):
    def lost(*args, **kwargs):
        raise OperationalError("connection to server was lost")

    monkeypatch.setattr(tokens, "authenticate_client", lost)
    response = _token(client, agent_basic)
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.has_header("Retry-After")
    assert response.has_header("X-Request-ID")


def test_the_token_endpoint_reads_the_policy_version_in_the_rate_limit_round_trip(client, agent_basic, redis_url,
                                                                                  monkeypatch):
    """The policies' version comes with the rate limits' one round trip to Redis: the token request asks the cache
    nothing else."""
    assert signin_oauth._redis() is not None  # the cache is Redis wherever REDIS_URL is set
    assert _token(client, agent_basic).status_code == 200  # policies loaded, version known
    from django.core.cache import cache

    asked = []
    for operation in ("get", "get_many", "has_key", "add", "set", "incr"):
        original = getattr(cache, operation)
        monkeypatch.setattr(cache, operation,
                            lambda *a, _original=original, _name=operation, **k: asked.append(_name) or _original(*a,
                                                                                                               **k))
    assert _token(client, agent_basic).status_code == 200
    assert asked == []
