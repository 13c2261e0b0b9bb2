"""Client registration (R27; docs/oauth.md, "Client registration"): RFC 7591 dynamic registration, RFC 7592
management, the registration policy and the approval queue; every client is an agent in the registry."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from agents import policy as agent_policy
from agents import registry
from agents.choices import AgentKind, AgentStatus, IdentityType
from agents.models import Credential
from governance.oauth import clients, registration
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.models import OAuthClient
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

#: What the MCP Python SDK's OAuth client provider sends (a native app with loopback redirects, no secret).
MCP_SDK_METADATA = {
    "client_name": "MCP Inspector",
    "redirect_uris": ["http://127.0.0.1:33418/callback", "http://localhost/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
    "application_type": "native",
    "scope": "Agent.Read.All",
}


@pytest.fixture
def reg(world, settings):
    settings.OAUTH_REGISTRATION_WORKSPACE = "alpha"
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = False
    settings.OAUTH_DYNAMIC_REGISTRATION = "approval"
    return world


def _register(client, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(reverse("oauth-register"), data=data, content_type=extra.pop("content_type",
                                                                                     "application/json"), **extra)


def test_r27_dynamic_registration_accepts_what_the_mcp_sdk_sends(reg, settings):
    from django.test import Client

    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    response = _register(Client(enforce_csrf_checks=True), MCP_SDK_METADATA)
    assert response.status_code == 201, response.content
    body = response.json()
    for name in ("client_name", "redirect_uris", "grant_types", "response_types", "token_endpoint_auth_method",
                 "application_type", "scope"):
        assert body[name] == MCP_SDK_METADATA[name]
    assert body["client_id"] and isinstance(body["client_id_issued_at"], int)
    assert "client_secret" not in body
    assert body["registration_access_token"]
    assert body["registration_client_uri"] == (settings.PORTAL_BASE_URL
                                               + reverse("oauth-register-client", args=[body["client_id"]]))
    assert response["Cache-Control"] == "no-store"
    client = clients.resolve_client(body["client_id"])
    assert client.source == ClientSource.DYNAMIC and client.approval == ClientApproval.APPROVED
    assert clients.may_get_tokens(client) == ""
    assert clients.redirect_uri_matches(client, "http://127.0.0.1:40001/callback")  # any port (RFC 8252 §7.3)
    assert clients.redirect_uri_matches(client, "http://localhost:5173/cb")
    assert not clients.redirect_uri_matches(client, "http://127.0.0.1:40001/other")
    assert not clients.redirect_uri_matches(client, "http://127.0.0.1:33418/callback#x")
    # A public client holds no secret: the registry's credential was revoked at once (R5's "nothing active").
    assert not Credential.objects.filter(identity__agent=client.agent, revoked_at__isnull=True).exists()
    assert body["registration_access_token"] not in json.dumps(
        list(AuditEvent.objects.values_list("after", flat=True)), default=str)


def test_r27_registered_client_is_an_agent_in_the_registry(reg, client):
    response = _register(client, MCP_SDK_METADATA)
    assert response.status_code == 201
    oauth_client = OAuthClient.objects.select_related("agent").get(client_id=response.json()["client_id"])
    agent = oauth_client.agent
    assert agent.kind == AgentKind.CLIENT_APPLICATION
    assert agent.identity_type == IdentityType.AGENT_IDENTITY
    assert agent.identity.client_id == oauth_client.client_id
    assert agent.workspace == reg.alpha
    assert agent.blueprint.name == registration.BLUEPRINT_NAME and agent.blueprint.publisher_kind == "organisation"
    assert not agent.blueprint.required_permissions.exists() and not agent.identity.grants.exists()
    people = registry.people_of(agent)  # R7: the registration workspace's owners hold it
    assert {u.username for u in people[agent_policy.OWN_AGENT]} == {"owner", "owner_b"}
    assert {u.username for u in people[agent_policy.SPONSOR_AGENT]} == {"owner", "owner_b"}
    assert AuditEvent.objects.filter(action="agent.create", target_id=str(agent.pk)).exists()
    assert AuditEvent.objects.filter(action="oauth.client_register", target_id=str(agent.pk)).exists()
    # It shows in the agents list like any agent.
    client.force_login(reg.owner)
    page = client.get(reverse("agent-list"))
    assert page.status_code == 200 and agent.name in page.content.decode()


def test_r27_registration_in_approval_mode_waits_for_an_administrator(reg, client):
    response = _register(client, MCP_SDK_METADATA)
    assert response.status_code == 201
    oauth_client = clients.resolve_client(response.json()["client_id"])
    assert oauth_client.approval == ClientApproval.PENDING
    assert oauth_client.agent.status == AgentStatus.PENDING_APPROVAL
    assert "approval" in clients.may_get_tokens(oauth_client)
    # Someone who does not own the workspace cannot approve it; an owner of the workspace can.
    with pytest.raises(PermissionDenied):
        registration.client_approve(actor=reg.other, client=oauth_client)
    registration.client_approve(actor=reg.owner, client=oauth_client)
    oauth_client.refresh_from_db()
    oauth_client.agent.refresh_from_db()
    assert oauth_client.approval == ClientApproval.APPROVED and oauth_client.decided_by == reg.owner
    assert oauth_client.agent.status == AgentStatus.ACTIVE
    assert clients.may_get_tokens(oauth_client) == ""
    assert AuditEvent.objects.filter(action="oauth.client_approve").count() == 1
