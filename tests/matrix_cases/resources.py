"""Permission-matrix cases for discovery, the API's protected-resource metadata and agents as resources (R24, R26).

The well-known documents are public (any caller, no session). Making an agent a resource is for the owners of its
workspace, explicit or inherited: a contributor sees the agent but may not (403); another workspace's owner does
not see it (404). The path-insertion forms answer only when ``PORTAL_BASE_URL`` has a path (here it has none: 404).
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect

PUBLIC = expect(200, 200, 200, 200, 200, 200)
NOWHERE = expect(404, 404, 404, 404, 404, 404)
WORKSPACE_OWNERS_VIEW = expect(LOGIN, 403, 200, 200, 200, 404)
WORKSPACE_OWNERS_ACT = expect(LOGIN, 403, 302, 302, 302, 404)

CASES: list = [
    Case("oauth-authorization-server", "GET", lambda w: reverse("oauth-authorization-server"), PUBLIC),
    Case("openid-configuration", "GET", lambda w: reverse("openid-configuration"), PUBLIC),
    Case("oauth-protected-resource", "GET", lambda w: reverse("oauth-protected-resource"), PUBLIC),
    Case("oauth-authorization-server-path", "GET",
         lambda w: reverse("oauth-authorization-server-path", args=["tenant"]), NOWHERE),
    Case("openid-configuration-path", "GET", lambda w: reverse("openid-configuration-path", args=["tenant"]),
         NOWHERE),
    Case("oauth-protected-resource-path", "GET",
         lambda w: reverse("oauth-protected-resource-path", args=["tenant"]), NOWHERE),
    Case("agent-resource", "GET", lambda w: reverse("agent-resource", args=[w.agent.pk]), WORKSPACE_OWNERS_VIEW),
    Case("agent-resource", "POST", lambda w: reverse("agent-resource", args=[w.agent.pk]), WORKSPACE_OWNERS_ACT,
         data=lambda w: {"identifier": "https://agents.example.test/matrix", "scopes": "matrix.invoke"}),
]
