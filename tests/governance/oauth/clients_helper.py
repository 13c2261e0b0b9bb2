"""OAuth clients for tests (R27): an agent of kind "client application" in the registry, its identity, and its
``OAuthClient`` row; public (PKCE only) or confidential (a secret of the agent's credential)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

from agents import registry
from agents.choices import AgentKind
from agents.models import Agent, AgentIdentity
from governance.oauth.choices import AuthMethod, ClientApproval
from governance.oauth.models import OAuthClient
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint, make_workspace

REDIRECT_URI = "http://127.0.0.1/callback"
PASSWORD = "correct-horse-battery"


def make_client(*, workspace=None, owner=None, name: str | None = None, public: bool = True,
                redirect_uris=(REDIRECT_URI,), allowed_scopes=(), approval: str = ClientApproval.APPROVED,
                grant_types=()) -> tuple[OAuthClient, str]:
    """A client and its secret ("" for a public client)."""
    name = name or f"client-{secrets.token_hex(3)}"
    if owner is None:
        owner = UserFactory(username=f"owner-{name}")
        second = UserFactory(username=f"owner2-{name}")
        workspace = workspace or make_workspace(f"ws-{name}", owners=[owner, second])
    blueprint = make_blueprint(f"Blueprint-{name}", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        blueprint, name, sponsors=[owner], owners=[owner])).agent
    Agent.objects.filter(pk=agent.pk).update(kind=AgentKind.CLIENT_APPLICATION)
    agent.refresh_from_db()
    identity = AgentIdentity.objects.get(agent=agent)
    secret = ""
    if not public:
        _credential, secret = registry.credential_rotate(actor=None, agent=agent)
    client = OAuthClient.objects.create(
        agent=agent, client_id=identity.client_id, client_name=f"{name} app", redirect_uris=list(redirect_uris),
        grant_types=list(grant_types), response_types=["code"], allowed_scopes=list(allowed_scopes),
        token_endpoint_auth_method=AuthMethod.NONE if public else AuthMethod.CLIENT_SECRET_BASIC,
        approval=approval, application_type="native" if public else "web")
    return client, secret


def make_person(username: str = "alice", role: str = "security-reader"):
    person = UserFactory(username=username)
    if role:
        grant_role(person, role)
    return person


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(client: OAuthClient, challenge: str, *, scope: str = "User.Read.All offline_access",
                     state: str = "xyz", redirect_uri: str = REDIRECT_URI, **extra) -> dict:
    params = {"response_type": "code", "client_id": client.client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "code_challenge": challenge, "code_challenge_method": "S256", **extra}
    return {k: v for k, v in params.items() if v is not None}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def get_code(django_client, client: OAuthClient, person, *, scope: str = "User.Read.All offline_access",
             **extra) -> tuple[str, str]:
    """Sign ``person`` in, consent, and return (code, verifier)."""
    verifier, challenge = pkce_pair()
    django_client.force_login(person)
    params = authorize_params(client, challenge, scope=scope, **extra)
    response = django_client.get("/oauth/authorize/", params)
    if response.status_code == 200:
        response = django_client.post("/oauth/authorize/?" + _encode(params), {"decision": "approve"})
    assert response.status_code == 302, response.content[:500]
    query = query_of(response["Location"])
    assert "code" in query, query
    return query["code"], verifier


def _encode(params: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


def redeem(django_client, client: OAuthClient, code: str, verifier: str, *, secret: str = "",
           redirect_uri: str = REDIRECT_URI, **extra):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": verifier, "client_id": client.client_id, **extra}
    if secret:
        data["client_secret"] = secret
    return django_client.post("/oauth/token/", data)


def refresh(django_client, client: OAuthClient, refresh_token: str, *, secret: str = "", **extra):
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client.client_id, **extra}
    if secret:
        data["client_secret"] = secret
    return django_client.post("/oauth/token/", data)
