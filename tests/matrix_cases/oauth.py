"""Permission-matrix cases for the OAuth endpoints, personal tokens, resource servers and the policies API.

The OAuth endpoints ignore browser sessions: a caller authenticates as a client (token, revoke) or a resource
server (introspect), so every persona without those credentials gets the protocol's 401 ``invalid_client``.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _server(w):
    from governance.signin import tokens
    from governance.signin.models import ResourceServer

    return ResourceServer.objects.first() or tokens.resource_server_create(actor=None, name="Matrix RS")[0]


def _policy(w):
    from governance.conditional_access.models import ConditionalAccessPolicy

    return ConditionalAccessPolicy.objects.get_or_create(name="Matrix API policy", defaults={"all_agents": True})[0]


CLIENT_ONLY = expect(401, 401, 401, 401, 401, 401)
ADMINS_ONLY = expect(LOGIN, 403, 403, 200, 200, 403)
POLICY_API = expect(403, 403, 200, 200, 200, 200)

CASES = [
    Case("oauth-token", "POST", lambda w: reverse("oauth-token"), CLIENT_ONLY,
         data=lambda w: {"grant_type": "client_credentials"}),
    Case("oauth-introspect", "POST", lambda w: reverse("oauth-introspect"), CLIENT_ONLY,
         data=lambda w: {"token": "aipt_x"}),
    Case("oauth-revoke", "POST", lambda w: reverse("oauth-revoke"), CLIENT_ONLY, data=lambda w: {"token": "aipt_x"}),
    Case("personal-token", "GET", lambda w: reverse("personal-token"), expect(LOGIN, 200, 200, 200, 200, 200)),
    Case("resource-server-list", "GET", lambda w: reverse("resource-server-list"), ADMINS_ONLY),
    Case("resource-server-list", "POST", lambda w: reverse("resource-server-list"), ADMINS_ONLY,
         label="resource server register", data=lambda w: {"name": "Matrix proxy"}),
    Case("resource-server-revoke", "POST", lambda w: reverse("resource-server-revoke", args=[_server(w).pk]),
         expect(LOGIN, 403, 403, 302, 302, 403)),
    Case("api-policy-list", "GET", lambda w: "/api/v1/policies/", POLICY_API),
    Case("api-policy-detail", "GET", lambda w: f"/api/v1/policies/{_policy(w).pk}/", POLICY_API),
]
