"""R26: resource indicators (RFC 8707). A token is for exactly one audience, chosen by ``resource`` among registered
resource servers (matched byte for byte); no ``resource`` means the portal API; a token only carries scopes its
resource accepts; the portal API refuses tokens for another audience (docs/oauth.md, "Resource indicators")."""

from __future__ import annotations

import base64
import secrets
from urllib.parse import urlencode

import jwt
import pytest
from django.conf import settings
from django.utils import timezone

from agents import credentials, registry
from agents.models import Agent
from governance.signin import resources, tokens
from governance.signin.models import AccessToken, ResourceServer, SignIn
from portal import directory
from portal.models import DirectoryRole, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

MCP = "https://mcp.example.test/mcp"
OTHER = "https://other.example.test/api"
EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _resource(identifier: str, scopes) -> ResourceServer:
    """A registered resource server, as ``register_resource_server`` would leave it."""
    server = ResourceServer.objects.create(
        name=f"Resource {identifier}", client_id="rs-" + secrets.token_hex(12),
        secret_hash=credentials.hash_secret(tokens.RS_SECRET_PREFIX + secrets.token_urlsafe(32)),
        identifier=identifier, scopes=list(scopes))
    resources.resources_changed()
    return server


def _agent(world, name: str, permissions) -> tuple[Agent, str, str]:
    blueprint = make_blueprint(name.title().replace("-", ""), permissions=tuple(permissions))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, name, sponsors=[world.owner], owners=[world.owner])).agent
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    assert set(tokens.effective_scopes(agent, timezone.now()).scopes) == set(permissions)  # really held
    return agent, credential.identity.client_id, secret


def _token(client, client_id: str, secret: str, body: str = "", **data):
    """POST /oauth/token/; ``body`` adds raw form fields (for a repeated parameter)."""
    form = urlencode({"grant_type": "client_credentials", **data})
    return client.post("/oauth/token/", form + (f"&{body}" if body else ""),
                       content_type="application/x-www-form-urlencoded",
                       HTTP_AUTHORIZATION=_basic(client_id, secret))


def _error(response, error: str) -> dict:
    assert response.status_code == 400, response.content
    assert response.json()["error"] == error
    return response.json()


@pytest.fixture
def reader(world):
    """An agent holding User.Read.All, Policy.Read.All and Portal.Agents.Read.All."""
    return _agent(world, "resource-reader", ("User.Read.All", "Policy.Read.All", "Portal.Agents.Read.All"))


# --- which resource -------------------------------------------------------------------------------------------------
def test_r26_unknown_resource_is_invalid_target(client, reader):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["User.Read.All"])
    for unknown in ("https://unknown.example.test/mcp", MCP + "/", MCP.upper(), "mcp.example.test/mcp"):
        body = _error(_token(client, client_id, secret, resource=unknown), "invalid_target")
        assert unknown not in body.get("error_description", "")  # not echoed back
        sign_in = SignIn.objects.filter(resource=unknown).get()
        assert sign_in.error == "invalid_target" and sign_in.outcome == "failure" and sign_in.token_id is None
        assert sign_in.client_id == client_id and unknown in sign_in.reason
    assert not AccessToken.objects.exists()
    assert _token(client, client_id, secret, resource=MCP).status_code == 200  # the exact identifier is known


def test_r26_several_resources_are_invalid_target(client, reader):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["User.Read.All"])
    _resource(OTHER, ["User.Read.All"])
    for body in (f"resource={MCP}&resource={OTHER}", f"resource={MCP}&resource={MCP}"):
        _error(_token(client, client_id, secret, body), "invalid_target")
    assert not AccessToken.objects.exists()
    assert list(SignIn.objects.values_list("error", flat=True)) == ["invalid_target", "invalid_target"]


def test_r26_the_token_audience_is_exactly_the_resource(client, reader):
    agent, client_id, secret = reader
    _resource(MCP, ["User.Read.All", "Policy.Read.All"])
    _resource(OTHER, ["Policy.Read.All"])
    response = _token(client, client_id, secret, resource=MCP, scope="User.Read.All")
    assert response.status_code == 200, response.content
    value = response.json()["access_token"]
    claims = tokens.claims_of(value)
    assert claims["aud"] == MCP and claims["scope"] == "User.Read.All"  # one audience, a string, not a list
    keys = jwt.PyJWKSet.from_dict(_jwks())
    verified = jwt.decode(value, key=keys[jwt.get_unverified_header(value)["kid"]], algorithms=["ES256"],
                          audience=MCP, options={"strict_aud": True})
    assert verified["aud"] == MCP
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(value, key=keys[jwt.get_unverified_header(value)["kid"]], algorithms=["ES256"],
                   audience=OTHER)
    row = AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"]))
    assert row.audience == MCP and row.agent == agent
    assert SignIn.objects.get(token=row).resource == MCP

    other = tokens.claims_of(_token(client, client_id, secret, resource=OTHER).json()["access_token"])
    assert other["aud"] == OTHER and other["scope"] == "Policy.Read.All"


def _jwks() -> dict:
    from governance.signing import keys

    return keys.jwks()


def test_r26_no_resource_means_the_portal_api(client, reader):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["User.Read.All"])
    implicit = _token(client, client_id, secret)
    explicit = _token(client, client_id, secret, resource=settings.PORTAL_BASE_URL)
    for response in (implicit, explicit):
        assert response.status_code == 200, response.content
        claims = tokens.claims_of(response.json()["access_token"])
        assert claims["aud"] == settings.PORTAL_BASE_URL
        # the portal API accepts any permission of the catalog: everything the agent holds
        assert set(claims["scope"].split()) == {"User.Read.All", "Policy.Read.All", "Portal.Agents.Read.All"}
        api = client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {response.json()['access_token']}")
        assert api.status_code == 200
    assert set(AccessToken.objects.values_list("audience", flat=True)) == {settings.PORTAL_BASE_URL}
    assert sorted(SignIn.objects.values_list("resource", flat=True)) == ["", settings.PORTAL_BASE_URL]


# --- which scopes ---------------------------------------------------------------------------------------------------
def test_r26_a_scope_the_resource_does_not_accept_is_invalid_scope(client, reader):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["User.Read.All", "Mail.Read"])
    body = _error(_token(client, client_id, secret, resource=MCP, scope="User.Read.All Policy.Read.All"),
                  "invalid_scope")
    assert "Policy.Read.All" in body["error_description"] and "User.Read.All" not in body["error_description"]
    refused = SignIn.objects.get()
    assert refused.resource == MCP and "not accepted by the resource" in refused.reason
    assert refused.requested_scopes == ["Policy.Read.All", "User.Read.All"] and refused.granted_scopes == []
    # accepted by the resource but not held by the agent: invalid_scope too, for the other reason
    body = _error(_token(client, client_id, secret, resource=MCP, scope="Mail.Read"), "invalid_scope")
    assert "Mail.Read" in body["error_description"]
    assert not AccessToken.objects.exists()
    # the same scope is fine for the portal API, which accepts every permission
    assert _token(client, client_id, secret, scope="Policy.Read.All").status_code == 200


def test_r26_without_scope_the_token_carries_what_the_resource_accepts(client, reader, world):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["User.Read.All", "Mail.Read", "AuditLog.Read.All"])
    response = _token(client, client_id, secret, resource=MCP)
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "User.Read.All"  # held ∩ accepted: nothing the agent lacks
    assert tokens.claims_of(response.json()["access_token"])["scope"] == "User.Read.All"

    _resource(OTHER, ["Mail.Read"])  # accepts nothing the agent holds
    body = _error(_token(client, client_id, secret, resource=OTHER), "invalid_scope")
    assert body["error_description"]
    assert AccessToken.objects.count() == 1


def test_r26_the_portal_api_refuses_a_token_for_another_audience(client, reader):
    _agent_row, client_id, secret = reader
    _resource(MCP, ["Portal.Agents.Read.All"])
    for_mcp = _token(client, client_id, secret, resource=MCP).json()["access_token"]
    assert tokens.claims_of(for_mcp)["scope"] == "Portal.Agents.Read.All"  # the scope the API would want
    for_portal = _token(client, client_id, secret, scope="Portal.Agents.Read.All").json()["access_token"]
    assert client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {for_portal}").status_code == 200
    refused = client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {for_mcp}")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/policies/", HTTP_AUTHORIZATION=f"Bearer {for_mcp}").status_code == 401


# --- token exchange -------------------------------------------------------------------------------------------------
def test_r26_token_exchange_narrows_to_the_resource(client, world):
    person = UserFactory(username="resource-person")
    role = DirectoryRole.objects.create(key="resource-person", name="Resource person")
    role.permissions.set(Permission.objects.filter(name__in=["User.Read.All", "AuditLog.Read.All"], kind="delegated"))
    directory.role_assign(actor=None, user=person, role=role)
    _agent_row, client_id, secret = _agent(world, "resource-delegate", ("User.Read.All", "AuditLog.Read.All"))
    _resource(MCP, ["AuditLog.Read.All", "Mail.Read"])
    _row, subject_token = tokens.personal_token_issue(actor=person)

    everything = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token)
    assert everything.status_code == 200, everything.content
    assert set(everything.json()["scope"].split()) == {"User.Read.All", "AuditLog.Read.All"}
    assert tokens.claims_of(everything.json()["access_token"])["aud"] == settings.PORTAL_BASE_URL

    narrowed = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token, resource=MCP)
    assert narrowed.status_code == 200, narrowed.content
    claims = tokens.claims_of(narrowed.json()["access_token"])
    assert narrowed.json()["scope"] == claims["scope"] == "AuditLog.Read.All"
    assert claims["aud"] == MCP and claims["sub"] == str(person.oauth_subject) and claims["act"] == {"sub": client_id}
    assert AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"])).audience == MCP

    _error(_token(client, client_id, secret, **EXCHANGE, subject_token=subject_token, resource=MCP,
                  scope="User.Read.All"), "invalid_scope")
    _error(_token(client, client_id, secret, **EXCHANGE, subject_token=subject_token, resource=OTHER),
           "invalid_target")
    assert SignIn.objects.filter(resource=OTHER, error="invalid_target").count() == 1
