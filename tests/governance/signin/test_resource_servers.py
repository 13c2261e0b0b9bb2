"""Resource servers with identifiers, agents as resources and the portal API as a protected resource (R26;
docs/oauth.md, "Resource indicators")."""

from __future__ import annotations

import base64
import csv
import io

import jwt
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.urls import reverse

from agents import registry
from governance.access import services as access_packages
from governance.signin import resource_servers, tokens
from governance.signin.models import ResourceServer, SignIn
from governance.signing import keys
from portal.choices import Product
from portal.models import AuditEvent, Permission
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db

METADATA = "/.well-known/oauth-protected-resource"


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _secret(agent) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    return credential.identity.client_id, secret


def _token(client, agent, **data):
    client_id, secret = _secret(agent)
    return client.post("/oauth/token/", {"grant_type": "client_credentials", **data},
                       HTTP_AUTHORIZATION=_basic(client_id, secret))


# --- the portal API as a protected resource (RFC 9728) ------------------------------------------------------------
def test_r26_protected_resource_metadata_names_this_authorization_server(client, settings):
    response = client.get(METADATA)
    assert response.status_code == 200 and response["Access-Control-Allow-Origin"] == "*"
    body = response.json()
    assert body["resource"] == settings.PORTAL_BASE_URL
    assert body["authorization_servers"] == [settings.PORTAL_BASE_URL]
    assert body["bearer_methods_supported"] == ["header"]
    assert "Portal.Agents.Read.All" in body["scopes_supported"]
    assert "Portal.Agents.ReadWrite.All" not in body["scopes_supported"]  # privileged
    assert client.get("/.well-known/oauth-authorization-server").json()["issuer"] \
        == body["authorization_servers"][0]


def test_r26_api_challenge_points_at_protected_resource_metadata(client, settings, registry_world):
    challenge_target = f'resource_metadata="{settings.PORTAL_BASE_URL}{METADATA}"'
    bad = client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer not-a-token")
    assert bad.status_code == 401
    assert bad["WWW-Authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in bad["WWW-Authenticate"] and challenge_target in bad["WWW-Authenticate"]
    empty = client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer")
    assert empty.status_code == 401
    assert challenge_target in empty["WWW-Authenticate"] and "error=" not in empty["WWW-Authenticate"]
    # A token for another resource is not a token for the API (R26): invalid_token with the same challenge.
    tokens.resource_server_create(actor=None, name="Tickets", identifier="https://tickets.example.test",
                                  scopes="User.Read.All")
    other = _token(client, registry_world.agent, resource="https://tickets.example.test")
    assert other.status_code == 200, other.content
    foreign = client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {other.json()['access_token']}")
    assert foreign.status_code == 401 and challenge_target in foreign["WWW-Authenticate"]
    # No Authorization header at all: the same challenge, without an error (RFC 6750 §3.1).
    anonymous = client.get("/api/v1/agents/")
    assert anonymous.status_code == 401
    assert challenge_target in anonymous["WWW-Authenticate"] and "error=" not in anonymous["WWW-Authenticate"]


def test_r26_insufficient_scope_is_403_with_challenge(client, settings, registry_world):
    issued = _token(client, registry_world.agent)  # holds User.Read.All only: no Portal.* scope
    assert issued.status_code == 200, issued.content
    response = client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {issued.json()['access_token']}")
    assert response.status_code == 403
    challenge = response["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="Portal.Agents.Read.All"' in challenge
    assert f'resource_metadata="{settings.PORTAL_BASE_URL}{METADATA}"' in challenge


# --- registering resource servers --------------------------------------------------------------------------------
def test_r26_register_resource_server_command_prints_id_and_secret_once(capsys):
    call_command("register_resource_server", "Tickets API", "--identifier", "https://tickets.example.test/api",
                 "--scopes", "tickets.read tickets.write")
    out = capsys.readouterr().out
    server = ResourceServer.objects.get(name="Tickets API")
    lines = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert lines["client_id"] == server.client_id
    secret = lines["client_secret"]
    assert secret.startswith(tokens.RS_SECRET_PREFIX) and out.count(secret) == 1
    assert server.identifier == "https://tickets.example.test/api"
    assert server.scopes == ["tickets.read", "tickets.write"]
    assert tokens.authenticate_resource_server(server.client_id, secret).pk == server.pk
    assert secret not in server.secret_hash
    assert not AuditEvent.objects.filter(after__icontains=secret).exists()
    with pytest.raises(Exception, match="identifier"):
        call_command("register_resource_server", "Other", "--identifier", "https://tickets.example.test/api")


def test_r26_resource_scopes_join_the_catalog(client):
    tokens.resource_server_create(actor=None, name="Tickets", identifier="https://tickets.example.test",
                                  scopes="tickets.read User.Read.All")
    created = Permission.objects.get(name="tickets.read")
    assert (created.kind, created.product, created.privileged) == ("delegated", Product.RESOURCE, False)
    assert Permission.objects.filter(name="User.Read.All").exclude(product=Product.RESOURCE).exists()
    assert not Permission.objects.filter(name="User.Read.All", product=Product.RESOURCE).exists()
    assert "tickets.read" in client.get("/.well-known/oauth-authorization-server").json()["scopes_supported"]
    with pytest.raises(ValidationError, match="Privileged"):
        tokens.resource_server_create(actor=None, name="Evil", identifier="https://evil.example.test",
                                      scopes="RoleManagement.ReadWrite.Directory")
    assert not ResourceServer.objects.filter(name="Evil").exists()


@pytest.mark.parametrize("identifier", [
    "tickets.example.test", "/relative/path", "https://tickets.example.test/#frag", "ftp://tickets.example.test",
    "http://tickets.example.test", "https://", "https://tickets example.test", "urn:example:tickets",
    "https://tickets.example.test/\x00",
])
def test_r26_identifier_must_be_an_absolute_uri(identifier, settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    with pytest.raises(ValidationError):
        tokens.resource_server_create(actor=None, name="Bad", identifier=identifier, scopes="x.read")
    assert not ResourceServer.objects.filter(name="Bad").exists()


def test_r26_identifier_rules_for_loopback_uniqueness_and_scopes(settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(ValidationError):
        resource_servers.clean_identifier("http://127.0.0.1:9000/mcp")
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    assert resource_servers.clean_identifier("http://127.0.0.1:9000/mcp") == "http://127.0.0.1:9000/mcp"
    with pytest.raises(ValidationError):
        resource_servers.clean_identifier(settings.PORTAL_BASE_URL)  # the portal API's own
    tokens.resource_server_create(actor=None, name="One", identifier="https://one.example.test", scopes="a.b")
    with pytest.raises(ValidationError, match="identifier"):
        tokens.resource_server_create(actor=None, name="Two", identifier="https://one.example.test")
    for bad in ('say"hi', "back\\slash", "é"):
        with pytest.raises(ValidationError):
            resource_servers.clean_scopes(bad)


def test_r26_resource_server_page_takes_identifier_and_scopes_and_shows_the_secret_once(client, world):
    client.force_login(world.ga)
    response = client.post(reverse("resource-server-list"), {
        "name": "Wiki", "identifier": "https://wiki.example.test", "scopes": "wiki.read"})
    assert response.status_code == 200
    server = ResourceServer.objects.get(name="Wiki")
    assert server.identifier == "https://wiki.example.test" and server.scopes == ["wiki.read"]
    html = response.content.decode()
    assert 'id="rs-secret"' in html and response["Cache-Control"] == "no-store"
    again = client.get(reverse("resource-server-list")).content.decode()
    assert 'id="rs-secret"' not in again and "https://wiki.example.test" in again and "wiki.read" in again
    bad = client.post(reverse("resource-server-list"), {"name": "Bad", "identifier": "wiki", "scopes": ""})
    assert bad.status_code == 200 and not ResourceServer.objects.filter(name="Bad").exists()


def test_r26_revoking_a_resource_makes_it_an_unknown_target(client, registry_world):
    server, _ = tokens.resource_server_create(actor=None, name="Tickets", identifier="https://tickets.example.test",
                                              scopes="User.Read.All")
    assert _token(client, registry_world.agent, resource="https://tickets.example.test").status_code == 200
    tokens.resource_server_revoke(actor=None, server=server)
    refused = _token(client, registry_world.agent, resource="https://tickets.example.test")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"


# --- agents as resources -----------------------------------------------------------------------------------------
AGENT_RESOURCE = "https://agents.example.test/matrix-agent"


def test_r26_an_agent_as_a_resource_gets_tokens_for_it_from_another_agent(client, registry_world, settings):
    w = registry_world
    server = resource_servers.agent_resource_set(actor=w.owner, agent=w.agent, identifier=AGENT_RESOURCE,
                                                 scopes="matrix.invoke")
    assert server.agent_id == w.agent.pk and server.identifier == AGENT_RESOURCE
    caller = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "caller-agent", sponsors=[w.owner], owners=[w.owner_b])).agent
    # Without the resource's scope the caller gets nothing for it.
    refused = _token(client, caller, resource=AGENT_RESOURCE)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name="Call matrix-agent", policy={"approver_kind": "workspace_owners"},
        permissions=Permission.objects.filter(name="matrix.invoke"))
    assignment = access_packages.assignment_request(actor=w.owner_b, package=package, agent=caller,
                                                    justification="calls it")
    access_packages.assignment_decide(actor=w.owner, assignment=assignment, approve=True)

    issued = _token(client, caller, resource=AGENT_RESOURCE)
    assert issued.status_code == 200, issued.content
    assert issued.json()["scope"] == "matrix.invoke"
    value = issued.json()["access_token"]
    # The resource agent verifies offline, with the published keys only.
    jwks = jwt.PyJWKSet.from_dict(keys.jwks())
    kid = jwt.get_unverified_header(value)["kid"]
    claims = jwt.decode(value, jwks[kid].key, algorithms=["ES256"], audience=AGENT_RESOURCE,
                        issuer=settings.PORTAL_BASE_URL)
    assert claims["aud"] == AGENT_RESOURCE and claims["scope"] == "matrix.invoke"
    assert claims["agent_id"] == caller.pk
    # The sign-in row has both parties, and so do the log page and its export.
    row = SignIn.objects.filter(agent=caller, outcome="success").latest("at")
    assert row.resource == AGENT_RESOURCE
    client.force_login(w.owner)
    page = client.get(reverse("signin-list")).content.decode()
    assert AGENT_RESOURCE in page and "agent matrix-agent" in page
    export = client.get(reverse("signin-export") + "?format=csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    mine = [r for r in rows if r["id"] == str(row.pk)]
    assert mine and mine[0]["agent"] == "caller-agent" and mine[0]["resource"] == AGENT_RESOURCE
    assert mine[0]["resource_agent"] == "matrix-agent"


def test_r26_only_owners_may_make_their_agent_a_resource(client, registry_world):
    w = registry_world
    url = reverse("agent-resource", args=[w.agent.pk])
    data = {"identifier": AGENT_RESOURCE, "scopes": "matrix.invoke"}
    with pytest.raises(PermissionDenied):
        resource_servers.agent_resource_set(actor=w.contributor, agent=w.agent, identifier=AGENT_RESOURCE,
                                            scopes="matrix.invoke")
    client.force_login(w.contributor)
    assert client.post(url, data).status_code == 403
    client.force_login(w.other)  # another workspace's owner: the agent is invisible
    assert client.post(url, data).status_code == 404
    assert not ResourceServer.objects.filter(agent=w.agent).exists()
    client.force_login(w.owner)
    assert client.get(url).status_code == 200
    response = client.post(url, data)
    assert response.status_code == 302
    server = ResourceServer.objects.get(agent=w.agent)
    assert server.identifier == AGENT_RESOURCE
    assert AuditEvent.objects.filter(action="resource_server.agent_set").count() == 1
    client.post(url, {"identifier": AGENT_RESOURCE, "scopes": "matrix.invoke matrix.read"})
    server.refresh_from_db()
    assert server.scopes == ["matrix.invoke", "matrix.read"]
    assert ResourceServer.objects.filter(agent=w.agent).count() == 1


def test_r26_the_agent_page_links_owners_to_the_resource_page(client, registry_world):
    w = registry_world
    detail, link = reverse("agent-detail", args=[w.agent.pk]), reverse("agent-resource", args=[w.agent.pk])
    client.force_login(w.contributor)
    assert link not in client.get(detail).content.decode()  # not a resource, and not theirs to make one
    client.force_login(w.owner)
    page = client.get(detail).content.decode()
    assert 'id="agent-resource-panel"' in page and link in page
    resource_servers.agent_resource_set(actor=w.owner, agent=w.agent, identifier=AGENT_RESOURCE, scopes="m.invoke")
    client.force_login(w.contributor)
    page = client.get(detail).content.decode()
    assert AGENT_RESOURCE in page and link not in page
