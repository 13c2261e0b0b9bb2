"""OAuth 2.0 for agents (R1, R13, R20, R22): the token endpoint, token exchange, introspection, revocation, the
portal API with bearer tokens, conditional access at issuance, rate limits and secrecy."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from agents import registry
from agents.models import Agent
from governance.access import services as access_packages
from governance.access.models import Assignment
from governance.conditional_access import services as conditional_access
from governance.signin import tokens
from governance.signin.models import AccessToken, SignIn
from portal import directory
from portal.models import AuditEvent, DirectoryRole, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _secret(agent: Agent) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    return credential.identity.client_id, secret


def _token(client, client_id, secret, *, basic=True, ip="127.0.0.1", **data):
    data = {"grant_type": "client_credentials", **data}
    if basic:
        return client.post("/oauth/token/", data, HTTP_AUTHORIZATION=_basic(client_id, secret), REMOTE_ADDR=ip)
    return client.post("/oauth/token/", {**data, "client_id": client_id, "client_secret": secret}, REMOTE_ADDR=ip)


@pytest.fixture
def resource_server():
    server, secret = tokens.resource_server_create(actor=None, name="Test resource server")
    return server.client_id, secret


def _introspect(client, resource_server, value) -> dict:
    response = client.post("/oauth/introspect/", {"token": value}, HTTP_AUTHORIZATION=_basic(*resource_server))
    assert response.status_code == 200, response.content
    return response.json()


def _approve(w):
    """Make ``w.assignment`` (package Responder: SecurityIncident.ReadWrite.All → matrix-agent) active."""
    access_packages.assignment_decide(actor=w.owner, assignment=w.assignment, approve=True)
    w.assignment.refresh_from_db()
    return w.assignment


# --- R22: client credentials -------------------------------------------------------------------------------------
def test_r22_client_credentials_by_basic_and_by_form_give_the_effective_permissions(client, approval_world):
    w = approval_world
    client_id, secret = _secret(w.agent)
    before = _token(client, client_id, secret)
    assert before.status_code == 200, before.content
    assert before.json()["scope"] == "User.Read.All"  # the blueprint's automatic permission
    assert before["Cache-Control"] == "no-store"
    _approve(w)
    for basic in (True, False):
        body = _token(client, client_id, secret, basic=basic).json()
        assert body["token_type"] == "Bearer" and body["expires_in"] <= 600
        assert set(body["scope"].split()) == {"User.Read.All", "SecurityIncident.ReadWrite.All"}  # ∪ the package
        claims = tokens.claims_of(body["access_token"])  # a JWT signed by the portal (docs/oauth.md)
        assert claims is not None and claims["client_id"] == client_id
        stored = AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"]))
        assert stored.agent == w.agent and stored.subject is None


def test_r22_scope_narrows_and_asking_for_more_is_invalid_scope(client, approval_world):
    w = approval_world
    client_id, secret = _secret(w.agent)
    _approve(w)
    narrowed = _token(client, client_id, secret, scope="SecurityIncident.ReadWrite.All")
    assert narrowed.json()["scope"] == "SecurityIncident.ReadWrite.All"
    more = _token(client, client_id, secret, scope="User.Read.All Mail.Read")
    assert more.status_code == 400 and more.json()["error"] == "invalid_scope"
    assert "Mail.Read" in more.json()["error_description"]
    assert AccessToken.objects.count() == 1
    failed = SignIn.objects.get(error="invalid_scope")
    assert failed.requested_scopes == ["Mail.Read", "User.Read.All"] and failed.granted_scopes == []


def test_r22_standard_error_bodies(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    wrong = _token(client, client_id, "aip_wrong")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    unknown = _token(client, "nobody", secret)
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    unsupported = _token(client, client_id, secret, grant_type="password")
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    registry.agent_disable(actor=w.owner, agent=w.agent)
    disabled = _token(client, client_id, secret)
    assert disabled.status_code == 400 and disabled.json()["error"] == "unauthorized_client"
    assert "disabled" in disabled.json()["error_description"]
    bad_exchange = _token(client, client_id, secret, grant_type=tokens_exchange(), subject_token="aipt_nope",
                          subject_token_type="urn:ietf:params:oauth:token-type:access_token")
    assert bad_exchange.json()["error"] in ("unauthorized_client", "invalid_grant")
    assert not AccessToken.objects.exists()


def tokens_exchange() -> str:
    return "urn:ietf:params:oauth:grant-type:token-exchange"


def test_r22_privileged_scope_is_never_granted(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    response = _token(client, client_id, secret, scope="Portal.Agents.ReadWrite.All")
    assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
    privileged = set(Permission.objects.filter(privileged=True).values_list("name", flat=True))
    all_scopes = set(_token(client, client_id, secret).json()["scope"].split())
    assert all_scopes and not all_scopes & privileged


# --- validating and ending tokens --------------------------------------------------------------------------------
def test_r22_introspection_needs_a_registered_resource_server_and_hides_unknown_tokens(client, registry_world,
                                                                                         resource_server):
    w = registry_world
    client_id, secret = _secret(w.agent)
    value = _token(client, client_id, secret).json()["access_token"]
    claims = _introspect(client, resource_server, value)
    assert claims["active"] is True and claims["client_id"] == client_id and claims["scope"] == "User.Read.All"
    assert claims["exp"] - claims["iat"] == 600 and claims["sub"] == client_id and "act" not in claims
    assert _introspect(client, resource_server, "aipt_unknown") == {"active": False}
    assert _introspect(client, resource_server, "") == {"active": False}
    anonymous = client.post("/oauth/introspect/", {"token": value})
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "invalid_client"}
    as_agent = client.post("/oauth/introspect/", {"token": value}, HTTP_AUTHORIZATION=_basic(client_id, secret))
    assert as_agent.status_code == 401  # an agent is not a resource server
    server = tokens.authenticate_resource_server(*resource_server)
    tokens.resource_server_revoke(actor=w.ga, server=server)
    assert client.post("/oauth/introspect/", {"token": value},
                       HTTP_AUTHORIZATION=_basic(*resource_server)).status_code == 401


def test_r22_revoked_token_is_inactive_at_the_next_introspection(client, registry_world, resource_server):
    w = registry_world
    client_id, secret = _secret(w.agent)
    value = _token(client, client_id, secret).json()["access_token"]
    other_id, other_secret = _secret(registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "second-agent", sponsors=[w.owner], owners=[w.owner])).agent)
    assert client.post("/oauth/revoke/", {"token": value}, HTTP_AUTHORIZATION=_basic(other_id, other_secret)) \
        .status_code == 200  # RFC 7009: another client's token is silently left alone
    assert _introspect(client, resource_server, value)["active"] is True
    response = client.post("/oauth/revoke/", {"token": value}, HTTP_AUTHORIZATION=_basic(client_id, secret))
    assert response.status_code == 200
    assert _introspect(client, resource_server, value) == {"active": False}
    assert AuditEvent.objects.filter(action="token.revoke").count() == 1
    assert client.post("/oauth/revoke/", {"token": value}).status_code == 401  # clients authenticate


def test_r22_disabled_agent_token_is_inactive_at_once_and_stays_so_after_enabling(client, registry_world,
                                                                                   resource_server):
    w = registry_world
    client_id, secret = _secret(w.agent)
    value = _token(client, client_id, secret).json()["access_token"]
    registry.agent_disable(actor=w.owner, agent=w.agent)
    assert _introspect(client, resource_server, value) == {"active": False}
    assert tokens.claims_of(value) is not None  # R25: the JWT still verifies; its row, found by jti, is revoked
    registry.agent_enable(actor=w.owner, agent=w.agent)
    assert _introspect(client, resource_server, value) == {"active": False}  # revoked, not just hidden
    assert AccessToken.objects.get().revoked_reason.startswith("agent")


def test_r22_expired_token_is_inactive(client, registry_world, resource_server, settings):
    # Two seconds: the JWT's exp is a whole second (RFC 7519 NumericDate, rounded down, so never later than the row)
    settings.ACCESS_TOKEN_TTL = 2
    w = registry_world
    client_id, secret = _secret(w.agent)
    body = _token(client, client_id, secret).json()
    assert body["expires_in"] == 2
    assert _introspect(client, resource_server, body["access_token"])["active"] is True
    time.sleep(2.1)
    assert _introspect(client, resource_server, body["access_token"]) == {"active": False}


def test_r5_retirement_revokes_every_token(client, registry_world, resource_server):
    w = registry_world
    client_id, secret = _secret(w.agent)
    values = [_token(client, client_id, secret).json()["access_token"] for _ in range(2)]
    registry.agent_retire(actor=w.owner, agent=w.agent)
    assert all(_introspect(client, resource_server, v) == {"active": False} for v in values)
    assert all(tokens.claims_of(v) is not None for v in values)  # R25: inactive by jti, not by signature
    assert not AccessToken.objects.filter(revoked_at__isnull=True).exists()


def test_r18_a_token_never_outlives_the_assignment_that_gave_its_scope(client, approval_world, resource_server):
    w = approval_world
    client_id, secret = _secret(w.agent)
    assignment = _approve(w)
    ends = timezone.now() + timedelta(seconds=2)
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=ends)
    body = _token(client, client_id, secret).json()
    assert body["expires_in"] <= 2  # cut to the assignment's end: no job needed
    only_fixed = _token(client, client_id, secret, scope="User.Read.All").json()
    assert only_fixed["expires_in"] == 600  # a token without the package's scope is not cut
    time.sleep(2.1)
    assert _introspect(client, resource_server, body["access_token"]) == {"active": False}
    assert _introspect(client, resource_server, only_fixed["access_token"])["active"] is True
    assert _token(client, client_id, secret).json()["scope"] == "User.Read.All"


def test_r18_ending_an_assignment_revokes_the_tokens_that_carried_it(client, approval_world, resource_server):
    w = approval_world
    client_id, secret = _secret(w.agent)
    _approve(w)
    carrying = _token(client, client_id, secret).json()["access_token"]
    not_carrying = _token(client, client_id, secret, scope="User.Read.All").json()["access_token"]
    access_packages.assignment_revoke(actor=w.owner, assignment=w.assignment, reason="done")
    assert _introspect(client, resource_server, carrying) == {"active": False}
    assert tokens.claims_of(carrying) is not None  # R25: inactive by jti, not by signature
    assert _introspect(client, resource_server, not_carrying)["active"] is True


def test_r18_expiry_job_revokes_the_tokens_of_the_assignments_it_ends(client, approval_world, resource_server):
    from governance.access import lifecycle

    w = approval_world
    client_id, secret = _secret(w.agent)
    _approve(w)
    carrying = _token(client, client_id, secret).json()["access_token"]
    token = AccessToken.objects.get(token_hash=tokens.hash_token(tokens.claims_of(carrying)["jti"]))
    AccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    Assignment.objects.filter(pk=w.assignment.pk).update(starts_at=timezone.now() - timedelta(minutes=2),
                                                         expires_at=timezone.now() - timedelta(seconds=1))
    assert lifecycle.expire_assignments()["expired"] == 1
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_reason == "expired"


# --- R1: user-account agents ----------------------------------------------------------------------------------
def _role(key: str, names, kind="delegated") -> DirectoryRole:
    role = DirectoryRole.objects.create(key=key, name=key.replace("-", " ").title())
    role.permissions.set(Permission.objects.filter(name__in=list(names), kind=kind))
    return role


def test_r1_user_account_agent_token_speaks_for_its_user_with_at_most_the_users_rights(client, world,
                                                                                       resource_server):
    runner = UserFactory(username="runner")
    directory.role_assign(actor=None, user=runner, role=_role("incident-reader", ["User.Read.All"]))
    blueprint = make_blueprint("RunnerAgent", permissions=("User.Read.All", "Policy.Read.All"))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "runner-agent", identity_type="user_account", run_as_user=runner, sponsors=[world.owner],
        owners=[world.owner])).agent
    client_id, secret = _secret(agent)  # a user-account agent gets a client id with its first secret
    body = _token(client, client_id, secret).json()
    assert body["scope"] == "User.Read.All"  # Policy.Read.All is the agent's, not the user's
    claims = _introspect(client, resource_server, body["access_token"])
    # a client-credentials token's sub is the client id (docs/oauth.md); introspection names the user it runs as
    assert claims["sub"] == client_id and claims["username"] == "runner"
    assert claims["actor_kind"] == "user_account"
    asked = _token(client, client_id, secret, scope="Policy.Read.All")
    assert asked.json()["error"] == "invalid_scope"
    directory.user_deactivate(actor=world.ga, user=runner)
    assert _introspect(client, resource_server, body["access_token"]) == {"active": False}
    refused = _token(client, client_id, secret)
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    assert "runner is disabled" in refused.json()["error_description"]


# --- R13: token exchange -------------------------------------------------------------------------------------------


EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}


def test_r13_exchange_gives_the_user_as_subject_and_the_agent_as_actor_with_the_intersection(client, world,
                                                                                            resource_server):
    person = UserFactory(username="analyst")
    directory.role_assign(actor=None, user=person, role=_role("analyst", ["User.Read.All", "AuditLog.Read.All"]))
    blueprint = make_blueprint("Delegate", permissions=("User.Read.All", "Policy.Read.All"))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "delegate", sponsors=[world.owner], owners=[world.owner])).agent
    client_id, secret = _secret(agent)
    _personal, subject_token = tokens.personal_token_issue(actor=person)
    response = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "User.Read.All"  # agent {User, Policy} ∩ user {User, AuditLog}
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = _introspect(client, resource_server, body["access_token"])
    assert claims["sub"] == str(person.oauth_subject) and claims["username"] == "analyst"
    assert claims["act"] == {"sub": client_id}
    sign_in = SignIn.objects.get(token__isnull=False, actor_kind="on_behalf_of")
    assert sign_in.subject == person and sign_in.agent == agent
    nothing = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token, scope="AuditLog.Read.All")
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_scope"
    directory.user_deactivate(actor=world.ga, user=person)
    assert _introspect(client, resource_server, body["access_token"]) == {"active": False}
    after = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token)
    assert after.json()["error"] == "invalid_grant"


def test_r13_an_agents_own_token_cannot_be_exchanged_as_a_person(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    own = _token(client, client_id, secret).json()["access_token"]
    response = _token(client, client_id, secret, **EXCHANGE, subject_token=own)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


# --- R20: conditional access at issuance --------------------------------------------------------------------------
def _policy(name, **data):
    return conditional_access.policy_save(actor=None, data={"name": name, "state": "on", "grant": "block", **data})


def test_r20_block_beats_allow_at_issuance_and_the_sign_in_names_the_policy(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    _policy("Allow the lab network", grant="allow", all_agents=True, ip_ranges=["10.0.0.0/8"])
    assert _token(client, client_id, secret, ip="10.1.2.3").status_code == 200
    outside = _token(client, client_id, secret, ip="192.0.2.7")
    assert outside.status_code == 400 and outside.json()["error"] == "invalid_grant"
    assert "Allow the lab network" in outside.json()["error_description"]
    conditional_access.policy_save(actor=None, data={"name": "Block matrix-agent", "state": "on", "grant": "block"},
                                   agents=[w.agent])
    inside = _token(client, client_id, secret, ip="10.1.2.3")
    assert inside.status_code == 400 and "Block matrix-agent" in inside.json()["error_description"]
    blocked = SignIn.objects.filter(outcome="blocked").order_by("-pk").first()
    assert {p["name"]: p["outcome"] for p in blocked.policies} == {"Allow the lab network": "allow",
                                                                    "Block matrix-agent": "block"}
    assert AccessToken.objects.count() == 1


def test_r20_report_only_never_blocks_and_is_recorded(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    conditional_access.policy_save(actor=None, data={"name": "Would block", "state": "report_only",
                                                     "grant": "block", "all_agents": True})
    response = _token(client, client_id, secret)
    assert response.status_code == 200
    sign_in = SignIn.objects.get(outcome="success")
    assert sign_in.policies == [{"id": sign_in.policies[0]["id"], "name": "Would block", "state": "report_only",
                                 "outcome": "block", "reason": sign_in.policies[0]["reason"]}]


def test_r20_what_if_matches_real_issuance_for_the_same_context(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    _policy("Office hours only", grant="allow", all_agents=True, ip_ranges=["10.0.0.0/8"])
    client.force_login(w.ga)
    for ip, allowed in (("10.9.9.9", True), ("203.0.113.5", False)):
        page = client.get("/governance/policies/what-if/", {"agent": "matrix-agent", "ip": ip})
        decision = "allowed" if "<strong>allowed</strong>" in page.content.decode() else "blocked"
        issued = _token(client, client_id, secret, ip=ip)
        assert decision == ("allowed" if allowed else "blocked")
        assert (issued.status_code == 200) is allowed


def test_r20_policy_changes_apply_to_the_next_token_request(client, registry_world):
    w = registry_world
    client_id, secret = _secret(w.agent)
    assert _token(client, client_id, secret).status_code == 200
    policy = _policy("Block all", all_agents=True)
    assert _token(client, client_id, secret).status_code == 400
    conditional_access.policy_save(actor=None, data={"state": "off"}, policy=policy)
    assert _token(client, client_id, secret).status_code == 200


# --- the portal API with bearer tokens -----------------------------------------------------------------------------
def test_r22_portal_api_accepts_bearer_tokens_within_their_scopes(client, world):
    blueprint = make_blueprint("Reader", permissions=("Portal.Agents.Read.All",))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "api-reader", sponsors=[world.owner], owners=[world.owner])).agent
    registry.agent_create(actor=world.other, workspace=world.beta, spec=agent_spec(
        blueprint, "beta-agent", sponsors=[world.other], owners=[world.other]))
    client_id, secret = _secret(agent)
    value = _token(client, client_id, secret).json()["access_token"]
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {value}"}
    agents_page = client.get("/api/v1/agents/", **bearer)
    assert agents_page.status_code == 200
    # An agent's own token reads its own workspace; beta-agent would take Portal.Read.All (test_agent_facts_api.py).
    assert {a["name"] for a in agents_page.json()["results"]} == {"api-reader"}
    assert client.get("/api/v1/policies/", **bearer).status_code == 403  # no Policy.Read.All
    assert client.get("/api/v1/audit-events/", **bearer).status_code == 403
    assert client.post(f"/api/v1/agents/{agent.pk}/disable/", **bearer).status_code == 403  # tokens never write
    assert client.get("/api/v1/agents/", HTTP_AUTHORIZATION="Bearer aipt_forged").status_code == 401
    registry.agent_disable(actor=world.owner, agent=agent)
    assert client.get("/api/v1/agents/", **bearer).status_code == 401


def test_r22_a_real_oauth_client_gets_a_token_and_calls_the_api(live_server, registry_world, settings):
    """authlib's client-credentials client (not ours) against the running portal."""
    from authlib.integrations.requests_client import OAuth2Session

    w = registry_world
    blueprint = make_blueprint("ApiClient", permissions=("Portal.Agents.Read.All", "Policy.Read.All"))
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "authlib-agent", sponsors=[w.owner], owners=[w.owner])).agent
    client_id, secret = _secret(agent)
    conditional_access.policy_save(actor=None, data={"name": "Sample", "state": "report_only", "grant": "block",
                                                     "publisher_kinds": ["partner"]})
    session = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_basic",
                            scope="Portal.Agents.Read.All Policy.Read.All")
    token = session.fetch_token(f"{live_server.url}/oauth/token/", grant_type="client_credentials")
    assert set(token["scope"].split()) == {"Portal.Agents.Read.All", "Policy.Read.All"}
    agents_page = session.get(f"{live_server.url}/api/v1/agents/")
    assert agents_page.status_code == 200 and "authlib-agent" in {a["name"] for a in agents_page.json()["results"]}
    policies = session.get(f"{live_server.url}/api/v1/policies/")
    assert policies.status_code == 200 and policies.json()["results"][0]["name"] == "Sample"
    form_session = OAuth2Session(client_id, secret, token_endpoint_auth_method="client_secret_post")
    assert form_session.fetch_token(f"{live_server.url}/oauth/token/", grant_type="client_credentials")


# --- hardening --------------------------------------------------------------------------------------------------
def test_r22_token_requests_are_rate_limited_per_client_and_per_ip(client, registry_world, settings,
                                                                  fresh_rate_window):
    w = registry_world
    client_id, secret = _secret(w.agent)
    settings.OAUTH_RATE_LIMIT_PER_CLIENT = 3
    assert [_token(client, client_id, secret).status_code for _ in range(4)] == [200, 200, 200, 429]
    settings.OAUTH_RATE_LIMIT_PER_CLIENT, settings.OAUTH_RATE_LIMIT_PER_IP = 1000, 2
    statuses = [_token(client, "someone", "x", ip="198.51.100.1").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    limited = _token(client, client_id, secret, ip="198.51.100.1")
    _assert_too_many_requests(limited)


def _assert_too_many_requests(response) -> None:
    """RFC 6585's 429 with ``Retry-After``: the seconds until the rate window (a clock minute) turns over; an RFC
    6749-style body whose error is not the device flow's ``slow_down`` (there is no device flow here)."""
    left = 60 - int(time.time()) % 60
    assert response.status_code == 429
    assert int(response["Retry-After"]) in (left, left + 1, left - 1) and 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["error"] == "temporarily_unavailable" and response.json()["error_description"]
    assert response["Cache-Control"] == "no-store"


def test_r22_no_secret_or_token_reaches_logs_audit_or_the_sign_in_log(client, registry_world, caplog):
    w = registry_world
    caplog.set_level(logging.DEBUG)
    client_id, secret = _secret(w.agent)
    value = _token(client, client_id, secret).json()["access_token"]
    _token(client, client_id, secret + "x")
    client.post("/oauth/revoke/", {"token": value, "client_id": client_id, "client_secret": secret})
    person = UserFactory(username="delegator")
    directory.role_assign(actor=None, user=person, role=_role("delegator", ["User.Read.All"]))
    _t, personal = tokens.personal_token_issue(actor=person)
    stored = json.dumps(list(AuditEvent.objects.values()), default=str) + json.dumps(
        list(SignIn.objects.values()), default=str) + json.dumps(list(AccessToken.objects.values()), default=str)
    for leaked in (secret, value, personal):
        assert leaked not in caplog.text and leaked not in stored


def test_r22_personal_token_page_shows_the_token_once(client, world):
    person = UserFactory(username="page-person")
    directory.role_assign(actor=None, user=person, role=_role("page-role", ["User.Read.All"]))
    client.force_login(person)
    page = client.get("/governance/tokens/")
    assert page.status_code == 200 and "User.Read.All" in page.content.decode()
    issued = client.post("/governance/tokens/", {"scopes": ""})
    assert issued.status_code == 200 and issued["Cache-Control"] == "no-store"
    token = AccessToken.objects.get(subject=person)
    assert 'id="personal-token-value"' in issued.content.decode() and token.scopes == ["User.Read.All"]
    [value] = re.findall(r'id="personal-token-value">([^<]+)<', issued.content.decode())
    assert tokens.claims_of(value)["sub"] == str(person.oauth_subject)  # the JWT, shown once
    assert value not in client.get("/governance/tokens/").content.decode()
    refused = client.post("/governance/tokens/", {"scopes": "Mail.Read"})
    assert "You do not hold Mail.Read" in refused.content.decode() and AccessToken.objects.count() == 1


def test_resource_servers_are_registered_by_administrators_with_a_secret_shown_once(client, world):
    client.force_login(world.inherited)
    response = client.post("/governance/tokens/resource-servers/", {"name": "Graph proxy"})
    assert response.status_code == 200 and 'id="rs-secret"' in response.content.decode()
    assert AuditEvent.objects.filter(action="resource_server.create").count() == 1
    client.force_login(world.owner)
    assert client.get("/governance/tokens/resource-servers/").status_code == 403


# --- R13 as a property: over random permission sets, an exchanged token never carries a right the user lacks ------

UNIVERSE = ["User.Read.All", "Group.Read.All", "Device.Read.All", "Application.Read.All", "AuditLog.Read.All",
            "Policy.Read.All", "Reports.Read.All", "Directory.Read.All"]
PRIVILEGED = ["Directory.ReadWrite.All", "RoleManagement.ReadWrite.Directory"]
_examples = iter(range(10**6))


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(agent_has=st.sets(st.sampled_from(UNIVERSE), min_size=1),
       user_has=st.sets(st.sampled_from(UNIVERSE + PRIVILEGED), min_size=1),
       asked=st.sets(st.sampled_from(UNIVERSE + PRIVILEGED + ["Mail.Read"])))
def test_r13_an_exchanged_token_never_carries_a_right_the_user_lacks(client, world, resource_server, agent_has,
                                                                     user_has, asked):
    n = next(_examples)
    savepoint = transaction.savepoint()
    try:
        person = UserFactory(username=f"person-{n}")
        directory.role_assign(actor=None, user=person, role=_role(f"role-{n}", user_has))
        blueprint = make_blueprint(f"Prop{n}", permissions=tuple(sorted(agent_has)))
        agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
            blueprint, f"prop-{n}", sponsors=[world.owner], owners=[world.owner])).agent
        client_id, secret = _secret(agent)
        user_rights = set(user_has) - set(PRIVILEGED)
        if not user_rights:
            with pytest.raises(ValidationError):
                tokens.personal_token_issue(actor=person)
            return
        _t, subject_token = tokens.personal_token_issue(actor=person)
        extra = {"scope": " ".join(sorted(asked))} if asked else {}
        response = _token(client, client_id, secret, **EXCHANGE, subject_token=subject_token, **extra)
        expected = (set(asked) if asked else set(UNIVERSE + PRIVILEGED)) & agent_has & user_rights
        if not expected:
            assert response.status_code == 400 and response.json()["error"] == "invalid_scope"
            return
        assert response.status_code == 200, response.content
        granted = set(response.json()["scope"].split())
        assert granted == expected
        assert granted <= user_rights and not granted & set(PRIVILEGED)
        claims = _introspect(client, resource_server, response.json()["access_token"])
        assert claims["sub"] == str(person.oauth_subject) and claims["username"] == person.username
        assert claims["act"] == {"sub": client_id}
    finally:
        transaction.savepoint_rollback(savepoint)


def test_seed_demo_prints_a_client_id_and_secret_whose_curl_line_gets_a_token(client):
    import re
    from io import StringIO

    from django.core.management import call_command

    def seed() -> str:
        out = StringIO()
        call_command("seed_demo", "--password", "pw", stdout=out)
        return next(line for line in out.getvalue().splitlines() if "curl -s -u" in line)

    line = seed()
    client_id, secret, url = re.search(r"-u '([^:]+):([^']+)' -d grant_type=client_credentials (\S+)", line).groups()
    assert url.endswith("/oauth/token/")
    response = _token(client, client_id, secret)
    assert response.status_code == 200 and response.json()["scope"]
    assert seed() == line  # idempotent: the same working secret every run
    assert _token(client, client_id, secret).status_code == 200


def test_r22_introspection_has_its_own_rate_limit(client, registry_world, resource_server, settings,
                                                 fresh_rate_window):
    """A resource server checks a token per call it serves: its budget is separate from agents' token requests."""
    settings.OAUTH_RATE_LIMIT_PER_IP, settings.OAUTH_INTROSPECT_RATE_LIMIT = 1, 3
    responses = [client.post("/oauth/introspect/", {"token": "aipt_x"}, HTTP_AUTHORIZATION=_basic(*resource_server))
                 for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    _assert_too_many_requests(responses[-1])
