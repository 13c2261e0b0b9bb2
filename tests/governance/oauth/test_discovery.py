"""Discovery (R24): the authorization server's metadata and the OpenID document, at the exact well-known URLs, with
an issuer equal to PORTAL_BASE_URL byte for byte, and endpoints that exist (docs/oauth.md, "Discovery")."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import override_settings
from django.urls import NoReverseMatch, Resolver404, resolve, reverse

from governance.signin import tokens

pytestmark = pytest.mark.django_db

DOCUMENTS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


def _metadata(client, url=DOCUMENTS[0]) -> dict:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.get("Location"))
    return response.json()


def test_r24_metadata_issuer_is_the_base_url_exactly(client, settings):
    for url in DOCUMENTS:
        assert _metadata(client, url)["issuer"] == settings.PORTAL_BASE_URL
    with override_settings(PORTAL_BASE_URL="https://portal.example.test"):
        for url in DOCUMENTS:
            metadata = _metadata(client, url)
            assert metadata["issuer"] == "https://portal.example.test"
            assert metadata["token_endpoint"] == "https://portal.example.test/oauth/token/"
            assert metadata["authorization_endpoint"] == "https://portal.example.test/oauth/authorize/"
            assert metadata["jwks_uri"] == "https://portal.example.test/oauth/jwks/"


@pytest.mark.parametrize("append_slash", [False, True])
def test_r24_well_known_documents_answer_200_without_redirect(client, settings, append_slash):
    settings.APPEND_SLASH = append_slash
    for url in DOCUMENTS:
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/json")
        assert response["Access-Control-Allow-Origin"] == "*"
        assert "max-age=" in response["Cache-Control"] and "no-store" not in response["Cache-Control"]
    openid = _metadata(client, DOCUMENTS[1])
    assert openid["subject_types_supported"] == ["public"]
    assert openid["id_token_signing_alg_values_supported"] == ["ES256"]


def test_r24_path_insertion_form_answers_only_the_issuers_path(client):
    with override_settings(PORTAL_BASE_URL="https://example.test/tenant1"):
        metadata = _metadata(client, "/.well-known/oauth-authorization-server/tenant1")
        assert metadata["issuer"] == "https://example.test/tenant1"
        assert client.get("/.well-known/oauth-authorization-server/other").status_code == 404
    assert client.get("/.well-known/oauth-authorization-server/tenant1").status_code == 404


def test_r24_every_advertised_endpoint_exists(client, settings):
    metadata = _metadata(client)
    expected_names = {"token_endpoint": "oauth-token", "introspection_endpoint": "oauth-introspect",
                      "revocation_endpoint": "oauth-revoke", "jwks_uri": "oauth-jwks",
                      "authorization_endpoint": "oauth-authorize", "registration_endpoint": "oauth-register"}
    missing = []
    for field, name in expected_names.items():
        url = metadata[field]
        assert url.startswith(settings.PORTAL_BASE_URL + "/")
        path = urlsplit(url).path
        try:
            resolved = resolve(path).url_name
        except Resolver404:
            resolved = None
        try:
            reversed_path = reverse(name)
        except NoReverseMatch:
            reversed_path = None
        if resolved != name or reversed_path != path:
            missing.append(f"{field} {path} (expected the URL named {name})")
    assert not missing, "advertised but not routed: " + "; ".join(missing)


def test_r24_plain_pkce_is_not_advertised(client):
    metadata = _metadata(client)
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["response_types_supported"] == ["code"]
    assert "urn:ietf:params:oauth:grant-type:token-exchange" in metadata["grant_types_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_r24_registration_endpoint_absent_when_off(client, settings):
    assert "registration_endpoint" in _metadata(client)
    settings.OAUTH_DYNAMIC_REGISTRATION = "off"
    for url in DOCUMENTS:
        assert "registration_endpoint" not in _metadata(client, url)


def test_r24_scopes_supported_are_the_catalog_and_registered_resources(client):
    tokens.resource_server_create(actor=None, name="Tickets", identifier="https://tickets.example.test",
                                  scopes=("tickets.read",))
    scopes = _metadata(client)["scopes_supported"]
    assert {"Portal.Agents.Read.All", "tickets.read", "offline_access"} <= set(scopes)
    assert "Portal.Agents.ReadWrite.All" not in scopes  # privileged: never offered (R4)
