"""An outside OAuth client against the running portal (R27): authlib's ``OAuth2Session`` does authorization code +
PKCE and refresh-token rotation; the person signs in and consents through the portal's own pages (a
``requests.Session`` standing in for the browser). Reusing an old refresh token fails and kills the family."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest
import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from governance.oauth.models import RefreshToken
from governance.risk.models import RiskDetection
from governance.signin.models import AccessToken, SignIn
from tests.governance.oauth.clients_helper import PASSWORD, make_client, make_person

CALLBACK = "http://127.0.0.1:8765/callback"
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def _sign_in_and_consent(base: str, authorization_url: str, username: str) -> str:
    """What the person's browser does: sign in, approve; returns where the portal sent it back to."""
    browser = requests.Session()
    login = browser.get(f"{base}/accounts/login/")
    signed_in = browser.post(f"{base}/accounts/login/", allow_redirects=False, data={
        "username": username, "password": PASSWORD, "csrfmiddlewaretoken": _CSRF.search(login.text).group(1)})
    assert signed_in.status_code == 302, signed_in.text[:300]
    page = browser.get(authorization_url, allow_redirects=False)
    assert page.status_code == 200 and "Approve" in page.text, page.text[:300]
    action = re.search(r'<form method="post" action="(/oauth/authorize/[^"]+)"', page.text).group(1)
    action = action.replace("&amp;", "&")
    decided = browser.post(urljoin(base, action), allow_redirects=False, data={
        "decision": "approve", "csrfmiddlewaretoken": _CSRF.search(page.text).group(1)})
    assert decided.status_code == 302
    return decided.headers["Location"]


@pytest.mark.django_db(transaction=True)
def test_r27_authlib_client_does_code_with_pkce_and_refresh_rotation(live_server, settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    settings.PORTAL_BASE_URL = live_server.url
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = False  # plain http on loopback
    oauth_client, _ = make_client(redirect_uris=("http://127.0.0.1/callback",))
    person = make_person("carol")
    session = OAuth2Session(oauth_client.client_id, redirect_uri=CALLBACK, scope="User.Read.All offline_access",
                            code_challenge_method="S256", token_endpoint_auth_method="none")
    verifier = generate_token(64)
    url, state = session.create_authorization_url(f"{live_server.url}/oauth/authorize/", code_verifier=verifier)
    back = _sign_in_and_consent(live_server.url, url, person.username)
    assert back.startswith(CALLBACK) and f"iss={requests.utils.quote(live_server.url, safe='')}" in back
    token = session.fetch_token(f"{live_server.url}/oauth/token/", authorization_response=back,
                                code_verifier=verifier, state=state)
    assert token["scope"] == "User.Read.All" and token["refresh_token"]
    first_refresh = token["refresh_token"]
    rotated = session.refresh_token(f"{live_server.url}/oauth/token/", refresh_token=first_refresh)
    assert rotated["refresh_token"] != first_refresh and rotated["access_token"] != token["access_token"]
    with pytest.raises(OAuthError) as refused:
        session.refresh_token(f"{live_server.url}/oauth/token/", refresh_token=first_refresh)
    assert refused.value.error == "invalid_grant"
    assert not RefreshToken.objects.filter(revoked_at__isnull=True).exists()
    assert not AccessToken.objects.filter(revoked_at__isnull=True).exists()
    assert SignIn.objects.filter(outcome="failure", reason="refresh token reuse", subject=person).exists()
    assert RiskDetection.objects.filter(agent=oauth_client.agent).exists()
    with pytest.raises(OAuthError):
        session.refresh_token(f"{live_server.url}/oauth/token/", refresh_token=rotated["refresh_token"])
