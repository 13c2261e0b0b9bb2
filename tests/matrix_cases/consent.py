"""Permission-matrix cases for people's OAuth pages: the authorization endpoint and "Connected apps" (R27).

The authorization endpoint without a known client shows an error page (400) to everyone, signed in or not: an
unverified client is never redirected to. A consent is its person's to revoke, and its client's administrators'
(Global and Security Administrators, the owners of the client agent's workspace); others get a 404.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _consent(w):
    from governance.oauth.models import Consent
    from tests.governance.oauth.clients_helper import make_client

    existing = Consent.objects.filter(user=w.owner, revoked_at__isnull=True).first()
    if existing is not None:
        return existing
    client, _ = make_client(workspace=w.alpha, owner=w.owner, name="matrix-client")
    return Consent.objects.create(user=w.owner, client=client, resource="http://testserver", scopes=["User.Read.All"])


CASES = [
    Case("oauth-authorize", "GET", lambda w: reverse("oauth-authorize"), expect(400, 400, 400, 400, 400, 400)),
    Case("oauth-authorize", "POST", lambda w: reverse("oauth-authorize"), expect(400, 400, 400, 400, 400, 400)),
    Case("connected-apps", "GET", lambda w: reverse("connected-apps"), expect(LOGIN, 200, 200, 200, 200, 200)),
    Case("connected-app-revoke", "GET", lambda w: reverse("connected-app-revoke", args=[_consent(w).pk]),
         expect(LOGIN, 404, 200, 200, 200, 404)),
    Case("connected-app-revoke", "POST", lambda w: reverse("connected-app-revoke", args=[_consent(w).pk]),
         expect(LOGIN, 404, 302, 302, 302, 404)),
]
