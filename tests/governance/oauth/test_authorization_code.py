"""Authorization code + PKCE with consent for people (R20, R24, R26, R27): the authorization endpoint, the consent
page, the code grant at the token endpoint and what it refuses."""

from __future__ import annotations

import jwt
import pytest
from django.conf import settings

from governance.conditional_access import services as conditional_access
from governance.oauth.choices import ClientApproval
from governance.oauth.models import AuthorizationCode, Consent, RefreshToken
from governance.risk.models import RiskDetection
from governance.signin.models import AccessToken, SignIn
from governance.signing import keys
from portal.models import AuditEvent
from tests.governance.oauth.clients_helper import (
    REDIRECT_URI,
    authorize_params,
    get_code,
    make_client,
    make_person,
    pkce_pair,
    query_of,
    redeem,
    refresh,
)

pytestmark = pytest.mark.django_db


def _verify(value: str, audience: str) -> dict:
    header = jwt.get_unverified_header(value)
    jwk = next(k for k in keys.jwks()["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK.from_dict(jwk).key
    return jwt.decode(value, key, algorithms=["ES256"], audience=audience, issuer=settings.PORTAL_BASE_URL)


def test_r27_authorization_code_with_pkce_end_to_end(client):
    oauth_client, _ = make_client()
    person = make_person()
    verifier, challenge = pkce_pair()
    client.force_login(person)
    params = authorize_params(oauth_client, challenge, scope="User.Read.All Policy.Read.All offline_access")
    page = client.get("/oauth/authorize/", params)
    assert page.status_code == 200
    text = page.content.decode()
    assert oauth_client.agent.name in text and "Read all users" in text and "Approve" in text
    approved = client.post(page.request["PATH_INFO"] + "?" + page.request["QUERY_STRING"], {"decision": "approve"})
    assert approved.status_code == 302
    assert approved["Location"].startswith(REDIRECT_URI + "?")
    query = query_of(approved["Location"])
    assert query["state"] == "xyz" and query["iss"] == settings.PORTAL_BASE_URL and query["code"]
    assert not AuthorizationCode.objects.filter(code_hash=query["code"]).exists()  # only the hash is kept
    assert query["code"] not in str(list(AuditEvent.objects.values_list("after", flat=True)))
    token = redeem(client, oauth_client, query["code"], verifier)
    assert token.status_code == 200, token.content
    assert token["Cache-Control"] == "no-store"
    body = token.json()
    assert set(body["scope"].split()) == {"User.Read.All", "Policy.Read.All"} and body["refresh_token"]
    claims = _verify(body["access_token"], settings.PORTAL_BASE_URL)
    assert claims["sub"] == str(person.oauth_subject) and claims["client_id"] == oauth_client.client_id
    assert claims["agent_id"] == oauth_client.agent_id and claims["aud"] == settings.PORTAL_BASE_URL
    row = AccessToken.objects.get(subject=person)
    assert row.grant_type == "authorization_code" and row.actor_kind == "on_behalf_of" and row.family
    assert SignIn.objects.filter(grant_type="authorization_code", outcome="success", subject=person).exists()
    again = refresh(client, oauth_client, body["refresh_token"])
    assert again.status_code == 200, again.content
    refreshed = again.json()
    assert refreshed["refresh_token"] != body["refresh_token"]
    assert _verify(refreshed["access_token"], settings.PORTAL_BASE_URL)["sub"] == str(person.oauth_subject)


def test_r27_plain_pkce_is_refused(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    response = client.get("/oauth/authorize/", {**authorize_params(oauth_client, "x" * 43),
                                                "code_challenge_method": "plain"})
    assert response.status_code == 302
    query = query_of(response["Location"])
    assert query["error"] == "invalid_request" and "S256" in query["error_description"]
    assert query["iss"] == settings.PORTAL_BASE_URL and query["state"] == "xyz"
    assert not AuthorizationCode.objects.exists()


def test_r27_missing_pkce_is_refused(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    params = authorize_params(oauth_client, None, code_challenge_method=None)
    response = client.get("/oauth/authorize/", params)
    assert query_of(response["Location"])["error"] == "invalid_request"
    assert not AuthorizationCode.objects.exists()


def test_r27_wrong_code_verifier_is_invalid_grant(client):
    oauth_client, _ = make_client()
    code, _verifier = get_code(client, oauth_client, make_person())
    other_verifier, _ = pkce_pair()
    response = redeem(client, oauth_client, code, other_verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert not AccessToken.objects.exists()


def test_r27_reused_code_is_refused_and_revokes_what_it_issued(client):
    oauth_client, _ = make_client()
    code, verifier = get_code(client, oauth_client, make_person())
    first = redeem(client, oauth_client, code, verifier)
    assert first.status_code == 200
    second = redeem(client, oauth_client, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    assert AccessToken.objects.count() == 1 and AccessToken.objects.get().revoked_at is not None
    assert RefreshToken.objects.get().revoked_at is not None
    assert refresh(client, oauth_client, first.json()["refresh_token"]).json()["error"] == "invalid_grant"
    assert RiskDetection.objects.filter(agent=oauth_client.agent, level="medium").exists()


def test_r27_redirect_uri_mismatch_shows_an_error_page_and_does_not_redirect(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    _verifier, challenge = pkce_pair()
    for uri in ("https://evil.example/callback", "http://127.0.0.1/other", "http://127.0.0.2/callback"):
        response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge, redirect_uri=uri))
        assert response.status_code == 400 and "Location" not in response
        assert "redirect URI" in response.content.decode()
    unknown = client.get("/oauth/authorize/", {**authorize_params(oauth_client, challenge), "client_id": "nobody"})
    assert unknown.status_code == 400 and "Location" not in unknown
    # and the token endpoint refuses a code redeemed with another redirect URI
    code, verifier = get_code(client, oauth_client, make_person("bob"))
    response = redeem(client, oauth_client, code, verifier, redirect_uri="http://127.0.0.1:9999/callback")
    assert response.json()["error"] == "invalid_grant"


def test_r27_loopback_redirect_uri_matches_any_port(client):
    oauth_client, _ = make_client(redirect_uris=("http://127.0.0.1/callback", "https://app.example/cb"))
    person = make_person()
    code, verifier = get_code(client, oauth_client, person, redirect_uri="http://127.0.0.1:53682/callback")
    assert redeem(client, oauth_client, code, verifier,
                  redirect_uri="http://127.0.0.1:53682/callback").status_code == 200
    _v, challenge = pkce_pair()
    for uri in ("https://app.example:8443/cb", "http://127.0.0.1:53682/elsewhere"):
        response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge, redirect_uri=uri))
        assert response.status_code == 400


def test_r26_unknown_resource_at_authorize_is_invalid_target(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    _v, challenge = pkce_pair()
    response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge,
                                                                resource="https://unknown.example/mcp"))
    query = query_of(response["Location"])
    assert query["error"] == "invalid_target" and query["iss"] == settings.PORTAL_BASE_URL


def test_r27_scope_beyond_the_persons_rights_is_left_out(client):
    oauth_client, _ = make_client()
    person = make_person()  # Security Reader: reads, not DeviceManagementApps.Read.All
    _v, challenge = pkce_pair()
    client.force_login(person)
    params = authorize_params(oauth_client, challenge, scope="User.Read.All DeviceManagementApps.Read.All")
    page = client.get("/oauth/authorize/", params)
    assert page.status_code == 200 and "you do not hold these" in page.content.decode()
    code, verifier = get_code(client, oauth_client, person, scope="User.Read.All DeviceManagementApps.Read.All")
    assert redeem(client, oauth_client, code, verifier).json()["scope"] == "User.Read.All"
    nothing = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge,
                                                               scope="DeviceManagementApps.Read.All"))
    assert query_of(nothing["Location"])["error"] == "access_denied"


def test_r27_privileged_scope_never_granted(client):
    oauth_client, _ = make_client()
    person = make_person("sam", role="security-administrator")  # holds Policy.ReadWrite.ConditionalAccess
    code, verifier = get_code(client, oauth_client, person, scope="Policy.ReadWrite.ConditionalAccess User.Read.All")
    assert redeem(client, oauth_client, code, verifier).json()["scope"] == "User.Read.All"
    _v, challenge = pkce_pair()
    only = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge,
                                                            scope="Policy.ReadWrite.ConditionalAccess"))
    assert query_of(only["Location"])["error"] == "access_denied"


def test_r27_client_pending_approval_gets_no_code_and_no_token(client):
    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    oauth_client.approval = ClientApproval.PENDING
    oauth_client.save(update_fields=["approval"])
    _v, challenge = pkce_pair()
    response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    query = query_of(response["Location"])
    assert query["error"] == "unauthorized_client" and "approval" in query["error_description"]
    assert AuthorizationCode.objects.count() == 1
    token = redeem(client, oauth_client, code, verifier)
    assert token.status_code == 400 and token.json()["error"] == "unauthorized_client"
    assert not AccessToken.objects.exists()


def test_r27_consent_is_remembered_and_revocable_on_connected_apps(client):
    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    tokens_body = redeem(client, oauth_client, code, verifier).json()
    assert Consent.objects.filter(user=person, revoked_at__isnull=True).count() == 1
    _v, challenge = pkce_pair()
    again = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    assert again.status_code == 302 and "code" in query_of(again["Location"])  # no consent page the second time
    apps = client.get("/oauth/connected-apps/")
    assert apps.status_code == 200 and str(oauth_client) in apps.content.decode()
    consent = Consent.objects.get(user=person)
    confirm = client.get(f"/oauth/connected-apps/{consent.pk}/revoke/")
    assert confirm.status_code == 200 and "Revoke access" in confirm.content.decode()
    assert client.post(f"/oauth/connected-apps/{consent.pk}/revoke/").status_code == 302
    consent.refresh_from_db()
    assert consent.revoked_at is not None
    assert not AccessToken.objects.filter(subject=person, revoked_at__isnull=True).exists()
    assert refresh(client, oauth_client, tokens_body["refresh_token"]).json()["error"] == "invalid_grant"
    assert AuditEvent.objects.filter(action="oauth.consent.revoke").exists()
    shown = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    assert shown.status_code == 200  # asked again
    stranger = make_person("mallory")
    client.force_login(stranger)
    assert client.get(f"/oauth/connected-apps/{consent.pk}/revoke/").status_code == 404


def test_r20_conditional_access_blocks_at_consent_and_at_the_token_endpoint(client):
    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    conditional_access.policy_save(actor=None, data={"name": "Block clients", "state": "on", "grant": "block",
                                                     "agent_kinds": ["client_application"]})
    conditional_access.policies_changed()
    token = redeem(client, oauth_client, code, verifier)
    assert token.status_code == 400 and "conditional access" in token.json()["error_description"]
    assert SignIn.objects.filter(outcome="blocked", grant_type="authorization_code").exists()
    _v, challenge = pkce_pair()
    response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    query = query_of(response["Location"])
    assert query["error"] == "access_denied" and "conditional access" in query["error_description"]


def test_r27_public_client_revokes_with_client_id_alone(client):
    oauth_client, _ = make_client()
    code, verifier = get_code(client, oauth_client, make_person())
    body = redeem(client, oauth_client, code, verifier).json()
    response = client.post("/oauth/revoke/", {"token": body["refresh_token"], "token_type_hint": "refresh_token",
                                              "client_id": oauth_client.client_id})
    assert response.status_code == 200
    assert RefreshToken.objects.get().revoked_at is not None
    assert AccessToken.objects.get().revoked_at is not None  # the family goes with it
    assert refresh(client, oauth_client, body["refresh_token"]).json()["error"] == "invalid_grant"


def test_r24_authorization_response_iss_equals_issuer(client, settings):
    oauth_client, _ = make_client()
    person = make_person()
    client.force_login(person)
    _v, challenge = pkce_pair()
    for params in (authorize_params(oauth_client, challenge), {**authorize_params(oauth_client, challenge),
                                                                "response_type": "token"}):
        response = client.get("/oauth/authorize/", params)
        if response.status_code == 200:
            response = client.post(response.request["PATH_INFO"] + "?" + response.request["QUERY_STRING"],
                                   {"decision": "deny"})
        query = query_of(response["Location"])
        assert query["iss"] == settings.PORTAL_BASE_URL and not query["iss"].endswith("/")
        assert query["error"] in ("access_denied", "unsupported_response_type")


def test_r27_anonymous_person_is_sent_to_sign_in_and_back(client):
    oauth_client, _ = make_client()
    _v, challenge = pkce_pair()
    response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert "next=/oauth/authorize/%3Fresponse_type%3Dcode" in response["Location"]


def test_r27_malformed_authorization_and_token_input_is_refused_never_a_server_error(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    _v, challenge = pkce_pair()
    for bad in ({"client_id": "a\x00b"}, {"client_id": "x" * 400}, {"redirect_uri": "http://127.0.0.1:x/callback"},
                {"scope": "User.Read.All\x00"}, {"state": "s" * 600}, {"resource": "\x00"},
                {"code_challenge": "short"}):
        response = client.get("/oauth/authorize/", {**authorize_params(oauth_client, challenge), **bad})
        assert response.status_code in (302, 400), (bad, response.status_code)
    for data in ({"grant_type": "authorization_code", "client_id": "a\x00b", "code": "c"},
                 {"grant_type": "refresh_token", "client_id": oauth_client.client_id, "refresh_token": "\x00"},
                 {"grant_type": "authorization_code", "client_id": oauth_client.client_id, "code": "x" * 500}):
        assert client.post("/oauth/token/", data).status_code == 400
    assert client.post("/oauth/revoke/", {"client_id": "a\x00b", "token": "t"}).status_code in (400, 401)


def test_r27_denied_client_or_disabled_agent_gets_no_code_and_its_refresh_fails(client):
    from agents import registry

    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    body = redeem(client, oauth_client, code, verifier).json()
    registry.agent_disable(actor=None, agent=oauth_client.agent, reason="test")
    _v, challenge = pkce_pair()
    response = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))
    assert query_of(response["Location"])["error"] == "unauthorized_client"
    assert refresh(client, oauth_client, body["refresh_token"]).json()["error"] == "unauthorized_client"
    other, _ = make_client(approval=ClientApproval.DENIED)
    denied = client.get("/oauth/authorize/", authorize_params(other, challenge))
    query = query_of(denied["Location"])
    assert query["error"] == "unauthorized_client" and "denied" in query["error_description"]
