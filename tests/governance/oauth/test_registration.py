"""Client registration (R27; docs/oauth.md, "Client registration"): RFC 7591 dynamic registration, RFC 7592
management, the registration policy and the approval queue; every client is an agent in the registry."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from agents import policy as agent_policy
from agents import registry
from agents.choices import AgentKind, AgentStatus, IdentityType
from agents.models import Agent, AgentUserObjectPermission, Credential
from governance.oauth import clients, registration
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.models import OAuthClient, RefreshToken
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
    assert client.get(reverse("agent-detail", args=[agent.pk])).status_code == 200


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


def test_r27_registration_approval_by_an_administrator_when_nobody_holds_the_client(reg, client):
    """The requester-less flow: nobody signed in to register; if the client is left without an active sponsor or
    owner, the approving administrator becomes both (R7)."""
    oauth_client = clients.resolve_client(_register(client, MCP_SDK_METADATA).json()["client_id"])
    agent = oauth_client.agent
    assert agent.created_by is None
    AgentUserObjectPermission.objects.filter(content_object=agent, user__in=[reg.owner, reg.owner_b]).delete()
    registration.client_approve(actor=reg.ga, client=oauth_client)
    people = registry.people_of(agent)
    assert [u.username for u in people[agent_policy.OWN_AGENT]] == ["ga"]
    assert [u.username for u in people[agent_policy.SPONSOR_AGENT]] == ["ga"]
    assert clients.may_get_tokens(clients.resolve_client(oauth_client.client_id)) == ""


def test_r27_denied_client_stays_disabled_and_needs_a_reason(reg, client):
    oauth_client = clients.resolve_client(_register(client, MCP_SDK_METADATA).json()["client_id"])
    with pytest.raises(ValidationError):
        registration.client_deny(actor=reg.inherited, client=oauth_client, reason="  ")
    registration.client_deny(actor=reg.inherited, client=oauth_client, reason="Unknown vendor")
    oauth_client = clients.resolve_client(oauth_client.client_id)
    assert oauth_client.approval == ClientApproval.DENIED and oauth_client.decision_reason == "Unknown vendor"
    assert oauth_client.agent.status == AgentStatus.DISABLED
    assert "denied" in clients.may_get_tokens(oauth_client)
    with pytest.raises(ValidationError):
        registration.client_approve(actor=reg.ga, client=oauth_client)


def test_r27_open_registration_only_for_loopback_redirects(reg, client, settings):
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    loopback = clients.resolve_client(_register(client, MCP_SDK_METADATA).json()["client_id"])
    assert loopback.approval == ClientApproval.APPROVED and loopback.agent.status == AgentStatus.ACTIVE
    web = _register(client, {"client_name": "Web app", "redirect_uris": ["https://app.example.test/callback"],
                             "token_endpoint_auth_method": "none"})
    assert web.status_code == 201
    web_client = clients.resolve_client(web.json()["client_id"])
    assert web_client.approval == ClientApproval.PENDING  # not on the user's machine: an administrator decides
    assert web_client.agent.status == AgentStatus.PENDING_APPROVAL and clients.may_get_tokens(web_client)
    mixed = _register(client, {**MCP_SDK_METADATA, "redirect_uris": ["http://127.0.0.1/cb", "https://x.test/cb"]})
    assert clients.resolve_client(mixed.json()["client_id"]).approval == ClientApproval.PENDING


def test_r27_registration_off_is_refused(reg, client, settings):
    settings.OAUTH_DYNAMIC_REGISTRATION = "off"
    response = _register(client, MCP_SDK_METADATA)
    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"
    assert not OAuthClient.objects.exists() and not Agent.objects.exists()
    # Administrators still register static clients.
    settings.OAUTH_DYNAMIC_REGISTRATION = "off"
    from governance.oauth.client_metadata import parse

    static = registration.client_register(actor=reg.ga, source=ClientSource.STATIC, metadata=parse(
        {"client_name": "Static", "redirect_uris": ["https://static.example.test/cb"]}))
    assert static.client.approval == ClientApproval.APPROVED


def test_r27_confidential_client_gets_its_secret_once(reg, client, settings):
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    response = _register(client, {"client_name": "Server app", "redirect_uris": ["https://srv.example.test/cb"],
                                  "token_endpoint_auth_method": "client_secret_post"})
    assert response.status_code == 201
    body = response.json()
    secret = body["client_secret"]
    assert secret and body["client_secret_expires_at"] > body["client_id_issued_at"]
    oauth_client = OAuthClient.objects.get(client_id=body["client_id"])
    credential = Credential.objects.get(identity__agent=oauth_client.agent, revoked_at__isnull=True)
    from agents import credentials

    assert credential.secret_hash == credentials.hash_secret(secret)  # kept hashed, as every agent secret
    assert secret not in json.dumps(oauth_client.metadata) and oauth_client.registration_token_hash != secret
    read = client.get(body["registration_client_uri"].removeprefix(settings.PORTAL_BASE_URL),
                      HTTP_AUTHORIZATION=f"Bearer {body['registration_access_token']}")
    assert read.status_code == 200 and "client_secret" not in read.json()  # shown once, never again
    assert secret not in read.content.decode()
    events = json.dumps(list(AuditEvent.objects.values_list("before", "after")), default=str)
    assert secret not in events and body["registration_access_token"] not in events


def test_r27_rfc7592_read_and_delete_with_the_registration_token(reg, client, settings):
    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    body = _register(client, {**MCP_SDK_METADATA, "token_endpoint_auth_method": "client_secret_basic"}).json()
    url = body["registration_client_uri"].removeprefix(settings.PORTAL_BASE_URL)
    token = body["registration_access_token"]
    wrong = client.get(url, HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 401 and 'error="invalid_token"' in wrong["WWW-Authenticate"]
    assert client.get(url).status_code == 401
    assert client.delete(url, HTTP_AUTHORIZATION="Bearer not-the-token").status_code == 401
    other = _register(client, MCP_SDK_METADATA).json()
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {other['registration_access_token']}").status_code == 401
    read = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert read.status_code == 200
    assert read.json()["client_id"] == body["client_id"] and read.json()["redirect_uris"] == body["redirect_uris"]
    oauth_client = OAuthClient.objects.get(client_id=body["client_id"])
    RefreshToken.objects.create(token_hash="f" * 64, family="fam", client=oauth_client, user=reg.owner,
                                resource="https://api.example.test", expires_at=oauth_client.created_at.replace(
                                    year=oauth_client.created_at.year + 1))
    deleted = client.delete(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert deleted.status_code == 204
    oauth_client.refresh_from_db()
    agent = Agent.objects.get(pk=oauth_client.agent_id)
    assert agent.status == AgentStatus.RETIRED  # retired through the registry (R5)
    assert not Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True).exists()
    assert not RefreshToken.objects.filter(client=oauth_client, revoked_at__isnull=True).exists()
    assert "retired" in clients.may_get_tokens(oauth_client)
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401  # the token is gone too
    assert AuditEvent.objects.filter(action="agent.retire", target_id=str(agent.pk)).exists()


@pytest.mark.parametrize(("body", "content_type", "error"), [
    ({**MCP_SDK_METADATA, "redirect_uris": ["https://app.example.test/cb#fragment"]}, None, "invalid_redirect_uri"),
    ({**MCP_SDK_METADATA, "redirect_uris": ["http://app.example.test/cb"]}, None, "invalid_redirect_uri"),
    ({**MCP_SDK_METADATA, "application_type": "web", "redirect_uris": ["http://127.0.0.1:9/cb"]}, None,
     "invalid_redirect_uri"),
    ({**MCP_SDK_METADATA, "redirect_uris": ["/relative/cb"]}, None, "invalid_redirect_uri"),
    ({**MCP_SDK_METADATA, "redirect_uris": []}, None, "invalid_redirect_uri"),
    ({**MCP_SDK_METADATA, "grant_types": ["authorization_code", "password"]}, None, "invalid_client_metadata"),
    ({**MCP_SDK_METADATA, "response_types": ["token"]}, None, "invalid_client_metadata"),
    ({**MCP_SDK_METADATA, "token_endpoint_auth_method": "private_key_jwt"}, None, "invalid_client_metadata"),
    ({**MCP_SDK_METADATA, "client_name": ["not", "a", "string"]}, None, "invalid_client_metadata"),
    ("this is not json", None, "invalid_client_metadata"),
    ("[1, 2, 3]", None, "invalid_client_metadata"),
    ("[" * 8000 + "]" * 8000, None, "invalid_client_metadata"),
    (json.dumps(MCP_SDK_METADATA), "application/x-www-form-urlencoded", "invalid_client_metadata"),
    ({**MCP_SDK_METADATA, "client_uri": "x" * 20_000}, None, "invalid_client_metadata"),  # too large
], ids=["fragment", "http-non-loopback", "web-loopback-http", "relative", "no-redirects", "unknown-grant",
        "implicit", "unsupported-auth", "bad-name", "non-json", "not-an-object", "deeply-nested", "form-encoded",
        "too-large"])
def test_r27_bad_metadata_is_invalid_client_metadata(reg, client, body, content_type, error):
    response = _register(client, body, **({"content_type": content_type} if content_type else {}))
    assert response.status_code == 400, response.content
    assert response.json()["error"] == error
    assert response.json()["error_description"]
    assert not OAuthClient.objects.exists() and not Agent.objects.exists()


def test_r27_loopback_http_follows_the_setting_for_web_clients(reg, client, settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    web = {**MCP_SDK_METADATA, "application_type": "web", "redirect_uris": ["http://127.0.0.1:9/cb"]}
    assert _register(client, web).status_code == 201


def test_r27_registration_is_rate_limited_per_address(reg, client, settings):
    settings.OAUTH_REGISTRATION_RATE_PER_IP = 2
    assert _register(client, MCP_SDK_METADATA).status_code == 201
    assert _register(client, MCP_SDK_METADATA).status_code == 201
    limited = _register(client, MCP_SDK_METADATA)
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert OAuthClient.objects.count() == 2
    assert client.get(reverse("oauth-register")).status_code == 405


def test_r27_conditional_access_covers_a_client_because_it_is_an_agent(reg, client, settings):
    from governance.conditional_access import services as conditional_access

    settings.OAUTH_DYNAMIC_REGISTRATION = "open"
    oauth_client = clients.resolve_client(_register(client, MCP_SDK_METADATA).json()["client_id"])
    agent = oauth_client.agent
    facts = conditional_access.agent_facts(agent)
    assert conditional_access.evaluate(facts, conditional_access.AccessContext()).allowed
    conditional_access.policy_save(actor=reg.ga, agents=[agent], data={
        "name": "Block the MCP client", "state": "on", "grant": "block"})
    evaluation = conditional_access.evaluate(facts, conditional_access.AccessContext())
    assert not evaluation.allowed and evaluation.blocked_by == "Block the MCP client"
    conditional_access.policy_save(actor=reg.ga, data={
        "name": "Client applications", "state": "report_only", "grant": "block",
        "agent_kinds": [AgentKind.CLIENT_APPLICATION]})
    verdicts = {v.name: v for v in conditional_access.evaluate(facts, conditional_access.AccessContext()).verdicts}
    assert verdicts["Client applications"].outcome == "block"


def test_r27_a_client_application_identity_holds_no_permission(reg):
    """The registry gives client applications a dedicated identity whatever their publisher only because that
    identity carries no permission; a blueprint with permissions cannot make one (and R2 still holds for others)."""
    from tests.factories import agent_spec, make_blueprint

    with_permissions = make_blueprint("OrgTool", publisher_kind="organisation", permissions=("User.Read.All",))
    with pytest.raises(ValidationError) as refused:
        registry.agent_create(actor=reg.owner, workspace=reg.alpha, spec=agent_spec(
            with_permissions, "org-client", sponsors=[reg.owner], owners=[reg.owner],
            kind=AgentKind.CLIENT_APPLICATION))
    assert "no permissions of its own" in str(refused.value)
    with pytest.raises(ValidationError) as r2:
        registry.agent_create(actor=reg.owner, workspace=reg.alpha, spec=agent_spec(
            with_permissions, "org-agent", sponsors=[reg.owner], owners=[reg.owner]))
    assert "agent identities are offered only" in str(r2.value)
