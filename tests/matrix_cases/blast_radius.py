"""Permission-matrix cases for the blast-radius previews (docs/blast-radius.md): whoever may make a disruptive change
may see what it stops, on its confirmation page and from the API; others who see the object get 403, the rest 404.
Disabling is for the agent's sponsors and owners, retiring and revoking a credential for its owners and the
workspace's owners, ending an assignment for the agent's owners and sponsors and the workspace's owners, removing an
access package for the workspace's owners."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _secret_id(w) -> int:
    from agents.models import Credential

    return Credential.objects.filter(identity__agent=w.agent).first().pk


CONFIRM = expect(LOGIN, 403, 200, 200, 200, 404)
API_PREVIEW = expect(403, 403, 200, 200, 200, 404)

CASES = [
    Case("agent-disable", "GET", lambda w: reverse("agent-disable", args=[w.agent.pk]), CONFIRM,
         label="agent-disable confirmation with what stops"),
    Case("credential-revoke-confirm", "GET",
         lambda w: reverse("credential-revoke-confirm", args=[w.agent.pk, "secret", _secret_id(w)]), CONFIRM),
    Case("assignment-end-confirm", "GET", lambda w: reverse("assignment-end-confirm", args=[w.assignment.pk]),
         CONFIRM),
    Case("api-agent-preview-list", "GET", lambda w: f"/api/v1/agents/{w.agent.pk}/preview/?action=disable",
         API_PREVIEW, label="api agent preview of a disable"),
    Case("api-agent-preview-list", "GET", lambda w: f"/api/v1/agents/{w.agent.pk}/preview/?action=retire",
         API_PREVIEW, label="api agent preview of a retire"),
    Case("api-credential-preview-list", "GET",
         lambda w: f"/api/v1/credentials/{_secret_id(w)}/preview/?action=revoke", API_PREVIEW),
    Case("api-assignment-preview-list", "GET",
         lambda w: f"/api/v1/assignments/{w.assignment.pk}/preview/?action=end", API_PREVIEW),
    Case("api-access-package-preview-list", "GET",
         lambda w: f"/api/v1/access-packages/{w.package.pk}/preview/?action=remove", API_PREVIEW),
]
