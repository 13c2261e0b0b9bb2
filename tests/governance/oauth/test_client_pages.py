"""The registered-clients pages and the approval queue (R27; docs/oauth.md, "Client registration"): who sees
which client, approve / deny with a reason / retire from the page, static clients with their secret shown once."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.choices import AgentStatus
from agents.models import Credential
from governance.oauth import registration
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.client_metadata import parse
from governance.oauth.models import Consent, OAuthClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def pages(world, settings):
    settings.OAUTH_REGISTRATION_WORKSPACE = "alpha"
    settings.OAUTH_DYNAMIC_REGISTRATION = "approval"
    return world


def _dynamic(name: str, uri: str = "https://app.example.test/cb") -> OAuthClient:
    return registration.client_register(actor=None, source=ClientSource.DYNAMIC, metadata=parse(
        {"client_name": name, "redirect_uris": [uri], "token_endpoint_auth_method": "none"})).client


def test_r27_client_list_shows_the_queue_to_owners_with_search_and_pages(pages, client):
    client.force_login(pages.owner)
    empty = client.get(reverse("oauth-client-list"))
    assert empty.status_code == 200 and "No OAuth clients yet" in empty.content.decode()
    waiting = _dynamic("Waiting App")
    approved = _dynamic("Approved App")
    registration.client_approve(actor=pages.owner, client=approved)
    page = client.get(reverse("oauth-client-list")).content.decode()
    assert "Waiting App" in page and "Approved App" in page and "https://app.example.test/cb" in page
    assert reverse("oauth-client-list") in page  # the governance navigation links here
    queue = client.get(reverse("oauth-client-list"), {"approval": "pending"}).content.decode()
    assert "Waiting App" in queue and "Approved App" not in queue
    assert 'id="pending-count">1<' in queue
    found = client.get(reverse("oauth-client-list"), {"q": "approved"}).content.decode()
    assert "Approved App" in found and "Waiting App" not in found
    assert "No client matches" in client.get(reverse("oauth-client-list"), {"q": "zzz"}).content.decode()
    for n in range(50):
        _dynamic(f"Bulk {n}")
    paged = client.get(reverse("oauth-client-list")).content.decode()
    assert "Page 1 of 2" in paged
    assert waiting.pk


def test_r27_client_pages_are_for_administrators_and_workspace_owners(pages, client):
    oauth_client = _dynamic("Alpha App")
    detail = reverse("oauth-client-detail", args=[oauth_client.pk])
    client.force_login(pages.contributor)
    assert client.get(reverse("oauth-client-list")).status_code == 403
    assert client.get(detail).status_code == 404
    client.force_login(pages.other)  # owns beta, not alpha: sees an empty list and no client
    assert "Alpha App" not in client.get(reverse("oauth-client-list")).content.decode()
    assert client.get(detail).status_code == 404
    assert client.post(reverse("oauth-client-approve", args=[oauth_client.pk])).status_code == 404
    for user in (pages.owner, pages.inherited, pages.ga):
        client.force_login(user)
        assert client.get(detail).status_code == 200
    oauth_client.refresh_from_db()
    assert oauth_client.approval == ClientApproval.PENDING


def test_r27_approve_deny_and_retire_from_the_client_page(pages, client):
    first, second = _dynamic("First App"), _dynamic("Second App")
    Consent.objects.create(user=pages.owner, client=first, resource="https://api.example.test", scopes=["x"])
    client.force_login(pages.owner_b)
    page = client.get(reverse("oauth-client-detail", args=[first.pk])).content.decode()
    assert 'id="consent-count">1<' in page
    assert "data-confirm=" in page and 'name="reason"' in page and "Approve" in page
    response = client.post(reverse("oauth-client-approve", args=[first.pk]))
    assert response.status_code == 302
    first.refresh_from_db()
    assert first.approval == ClientApproval.APPROVED and first.decided_by == pages.owner_b
    # Deny needs a reason; without one nothing changes.
    client.post(reverse("oauth-client-deny", args=[second.pk]), {"reason": ""})
    second.refresh_from_db()
    assert second.approval == ClientApproval.PENDING
    client.post(reverse("oauth-client-deny", args=[second.pk]), {"reason": "Not ours"})
    second.refresh_from_db()
    assert second.approval == ClientApproval.DENIED and second.agent.status == AgentStatus.DISABLED
    client.post(reverse("oauth-client-retire", args=[first.pk]))
    first.refresh_from_db()
    assert first.agent.status == AgentStatus.RETIRED
    assert "This client is retired" in client.get(reverse("oauth-client-detail", args=[first.pk])).content.decode()


def test_r27_administrator_registers_a_static_client_and_sees_the_secret_once(pages, client):
    client.force_login(pages.ga)
    response = client.post(reverse("oauth-client-list"), {
        "client_name": "Reporting site", "redirect_uris": "https://reports.example.test/cb\nhttps://r2.example.test/cb",
        "client_type": "confidential", "application_type": "web"})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    oauth_client = OAuthClient.objects.get(client_name="Reporting site")
    assert oauth_client.source == ClientSource.STATIC and oauth_client.approval == ClientApproval.APPROVED
    assert oauth_client.redirect_uris == ["https://reports.example.test/cb", "https://r2.example.test/cb"]
    assert oauth_client.agent.status == AgentStatus.ACTIVE
    secret = response.context["registered"].client_secret
    assert secret and secret in response.content.decode()
    assert Credential.objects.get(identity__agent=oauth_client.agent).prefix == secret[:10]
    assert secret not in client.get(reverse("oauth-client-list")).content.decode()
    assert secret not in client.get(reverse("oauth-client-detail", args=[oauth_client.pk])).content.decode()
    bad = client.post(reverse("oauth-client-list"), {
        "client_name": "Bad", "redirect_uris": "http://reports.example.test/cb", "client_type": "public",
        "application_type": "web"})
    assert bad.status_code == 200 and "https" in bad.content.decode()
    assert not OAuthClient.objects.filter(client_name="Bad").exists()
    client.force_login(pages.other)  # an owner of another workspace does not register into alpha
    assert client.post(reverse("oauth-client-list"), {"client_name": "X", "redirect_uris": "https://x.test/cb",
                                                      "client_type": "public",
                                                      "application_type": "web"}).status_code == 403
