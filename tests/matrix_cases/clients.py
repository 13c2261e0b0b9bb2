"""Permission-matrix cases for client registration and the registered-clients pages (R27; docs/oauth.md, "Client
registration").

RFC 7591 registration takes JSON and no session (a form post is ``invalid_client_metadata``, 400); RFC 7592 answers
401 without the client's registration access token. The pages are for Global and Security Administrators and the
owners of the client's workspace (alpha, the oldest workspace, is the registration workspace): a contributor owns
no workspace (list 403, client 404), the owner of another workspace sees an empty list and no client (404).
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _client(w):
    """A dynamically registered client of alpha, waiting for approval."""
    from governance.oauth import registration
    from governance.oauth.choices import ClientSource
    from governance.oauth.client_metadata import parse
    from governance.oauth.models import OAuthClient

    existing = OAuthClient.objects.filter(client_name="Matrix client").first()
    if existing is not None:
        return existing
    return registration.client_register(actor=None, source=ClientSource.DYNAMIC, metadata=parse({
        "client_name": "Matrix client", "redirect_uris": ["https://app.example.test/cb"],
        "token_endpoint_auth_method": "none"})).client


def _url(name):
    return lambda w: reverse(name, args=[_client(w).pk])


OWNERS_LIST = expect(LOGIN, 403, 200, 200, 200, 200)
ALPHA_OWNERS_REGISTER = expect(LOGIN, 403, 200, 200, 200, 403)
ALPHA_OWNERS_VIEW = expect(LOGIN, 404, 200, 200, 200, 404)
ALPHA_OWNERS_ACT = expect(LOGIN, 404, 302, 302, 302, 404)

CASES = [
    Case("oauth-register", "POST", lambda w: reverse("oauth-register"), expect(400, 400, 400, 400, 400, 400),
         data=lambda w: {"client_name": "form post"}),
    Case("oauth-register-client", "GET", lambda w: reverse("oauth-register-client", args=[_client(w).client_id]),
         expect(401, 401, 401, 401, 401, 401)),
    Case("oauth-client-list", "GET", lambda w: reverse("oauth-client-list"), OWNERS_LIST),
    Case("oauth-client-list", "POST", lambda w: reverse("oauth-client-list"), ALPHA_OWNERS_REGISTER,
         label="static client register", data=lambda w: {
             "client_name": "Matrix static", "redirect_uris": "https://static.example.test/cb",
             "client_type": "confidential", "application_type": "web"}),
    Case("oauth-client-detail", "GET", _url("oauth-client-detail"), ALPHA_OWNERS_VIEW),
    Case("oauth-client-approve", "POST", _url("oauth-client-approve"), ALPHA_OWNERS_ACT),
    Case("oauth-client-deny", "POST", _url("oauth-client-deny"), ALPHA_OWNERS_ACT,
         data=lambda w: {"reason": "Not one of ours"}),
    Case("oauth-client-retire", "POST", _url("oauth-client-retire"), ALPHA_OWNERS_ACT),
]
