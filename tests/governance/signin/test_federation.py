"""R28 at the token endpoint: an agent with no secret presents its platform's token (a Kubernetes service-account
token from a local OpenID issuer) and gets its own token; every refusal is logged with its reason."""

from __future__ import annotations

import time

import jwt
import pytest

from agents import registry, trust
from devkit.federation_issuer import FederationIssuer
from governance.signin import assertions
from governance.signin.models import AccessToken, SignIn
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

AUDIENCE = "https://portal.test"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    assertions.forget_keys()
    yield
    assertions.forget_keys()


@pytest.fixture
def issuer():
    with FederationIssuer() as running:
        yield running


@pytest.fixture
def agent(world, issuer):
    blueprint = make_blueprint("ClusterAgent", permissions=("User.Read.All",))
    made = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "cluster-agent", sponsors=[world.owner], owners=[world.owner_b])).agent
    trust.federated_credential_add(actor=world.owner, agent=made, issuer=issuer.issuer, audience=AUDIENCE,
                                   subject="system:serviceaccount:agents:cluster-agent")
    return made


def _token(client, client_id, assertion, **extra):
    return client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id,
                                         "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion,
                                         **extra}, REMOTE_ADDR="127.0.0.1")


def _last_sign_in() -> SignIn:
    return SignIn.objects.order_by("-pk").first()


def test_r28_federated_credential_gets_the_agent_its_token(client, agent, issuer):
    sa_token = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    response = _token(client, agent.identity.client_id, sa_token)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "User.Read.All"
    sign_in = _last_sign_in()
    assert (sign_in.outcome, sign_in.credential_type, sign_in.credential_issuer) == ("success", "federated",
                                                                                     issuer.issuer)
    assert sign_in.agent == agent and AccessToken.objects.filter(agent=agent).count() == 1
    assert sa_token not in sign_in.reason


@pytest.mark.parametrize(("make", "reason"), [
    (lambda i: i.service_account_token("agents", "someone-else", audience=AUDIENCE), "subject not trusted"),
    (lambda i: i.service_account_token("agents", "cluster-agent", audience="https://elsewhere"), "wrong audience"),
    (lambda i: i.service_account_token("agents", "cluster-agent", audience=AUDIENCE, issued_at=time.time() - 3600,
                                       lifetime=600), "expired"),
    (lambda i: FederationIssuer(path="/other").service_account_token("agents", "cluster-agent", audience=AUDIENCE),
     "no federated credential trusts the issuer"),
])
def test_r28_federated_refusals_are_logged_with_their_reason(client, agent, issuer, make, reason):
    response = _token(client, agent.identity.client_id, make(issuer))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    sign_in = _last_sign_in()
    assert sign_in.outcome == "failure" and reason in sign_in.reason, sign_in.reason
    assert sign_in.credential_type == "federated" and sign_in.agent == agent
    assert not AccessToken.objects.exists()


def test_r28_a_replayed_jti_is_refused(client, agent, issuer):
    sa_token = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    assert _token(client, agent.identity.client_id, sa_token).status_code == 200
    again = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)  # new token, same jti below
    replay = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE,
                                          jti=assertions.jwt.decode(sa_token, options={"verify_signature": False})
                                          ["jti"])
    assert _token(client, agent.identity.client_id, replay).status_code == 401
    assert "replayed" in _last_sign_in().reason
    assert _token(client, agent.identity.client_id, again).status_code == 200


def test_r28_rotated_issuer_keys_old_token_refused_new_accepted(client, agent, issuer):
    old_kid = issuer.kid
    assert _token(client, agent.identity.client_id,
                  issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)).status_code == 200
    old_key = dict(issuer._keys)[old_kid]
    issuer.rotate()
    fresh = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    assert _token(client, agent.identity.client_id, fresh).status_code == 200  # unknown kid: keys fetched again
    issuer._keys.append((old_kid, old_key))  # the platform still holds the old key, but no longer publishes it
    stale = issuer.sign({**assertions.jwt.decode(fresh, options={"verify_signature": False}), "jti": "stale-1"},
                        kid=old_kid)
    issuer._keys.pop()
    response = _token(client, agent.identity.client_id, stale)
    assert response.status_code == 401
    assert "signing key is not among the issuer's keys" in _last_sign_in().reason


def test_r28_jwt_bearer_grant_names_the_agent_from_its_rule(client, agent, issuer):
    sa_token = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    response = client.post("/oauth/token/", {"grant_type": JWT_BEARER, "assertion": sa_token},
                           REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200, response.content
    sign_in = _last_sign_in()
    assert sign_in.client_id == agent.identity.client_id and sign_in.credential_type == "federated"
    wrong = issuer.service_account_token("agents", "cluster-agent", audience="https://elsewhere")
    refused = client.post("/oauth/token/", {"grant_type": JWT_BEARER, "assertion": wrong}, REMOTE_ADDR="127.0.0.1")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert "wrong audience" in _last_sign_in().reason


def test_r28_pattern_subject_allowed_by_an_administrator(client, world, agent, issuer):
    trust.federated_credential_add(actor=world.inherited, agent=agent, issuer=issuer.issuer, audience=AUDIENCE,
                                   subject="system:serviceaccount:batch:*", subject_is_pattern=True)
    ok = _token(client, agent.identity.client_id,
                issuer.service_account_token("batch", "nightly-7", audience=AUDIENCE))
    assert ok.status_code == 200, ok.content
    refused = _token(client, agent.identity.client_id,
                     issuer.service_account_token("other", "nightly-7", audience=AUDIENCE))
    assert refused.status_code == 401 and "subject not trusted" in _last_sign_in().reason


def test_r28_a_secret_and_an_assertion_together_are_invalid_request(client, agent, issuer):
    _credential, secret = registry.credential_rotate(actor=None, agent=agent)
    response = _token(client, agent.identity.client_id,
                      issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE),
                      client_secret=secret)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_r28_retired_agent_federated_credential_no_longer_works(client, world, agent, issuer):
    registry.agent_retire(actor=world.owner, agent=agent)
    response = _token(client, agent.identity.client_id,
                      issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE))
    assert response.status_code == 401


def test_r28_discovery_advertises_private_key_jwt_and_the_jwt_bearer_grant(client):
    metadata = client.get("/.well-known/oauth-authorization-server", secure=True).json()
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert "ES256" in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert "none" not in metadata["token_endpoint_auth_signing_alg_values_supported"]
    assert JWT_BEARER in metadata["grant_types_supported"]
    assert "private_key_jwt" not in metadata["introspection_endpoint_auth_methods_supported"]


@pytest.fixture(params=["prepared", "orm"])
def path(request, monkeypatch):
    """The PostgreSQL statements (governance.signin.fastpath) and the ORM reference, against the same assertions."""
    from governance.signin import fastpath

    if request.param == "orm":
        monkeypatch.setattr(fastpath, "enabled", lambda: False)
    else:
        request.getfixturevalue("postgres")  # the statements are PostgreSQL's: fails in CI without it, as elsewhere
    return request.param


def test_r28_federated_issuance_on_both_paths(client, agent, issuer, path):
    from governance.signin import tokens

    found = tokens.authenticate_identity(agent.identity.client_id)
    assert found.client_id == agent.identity.client_id and found.agent.pk == agent.pk
    assert found.agent.status == "active" and found.agent.publisher_kind == "microsoft"
    assert tokens.authenticate_identity("no-such-client") is None
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _token(client, agent.identity.client_id,  # warm: the issuer's keys fetched, the policies read
           issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE))
    with CaptureQueriesContext(connection) as queries:
        response = _token(client, agent.identity.client_id,
                          issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE))
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "User.Read.All"
    if path == "prepared":  # the rules with the client in one statement, the sign-in row with the token in another
        assert len(queries) == 2, [q["sql"][:120] for q in queries]
    sign_in = _last_sign_in()
    assert (sign_in.credential_type, sign_in.credential_issuer, sign_in.token_id is not None) == (
        "federated", issuer.issuer, True)


def test_r5_r28_retirement_preview_lists_what_it_removes_and_leaves_nothing_usable(client, agent, issuer, world):
    """The retire page lists the agent's keys, its own federated credentials and the blueprint defaults it
    inherits; after retirement none of them (nor a secret) gets a token: the key and the rule are revoked, the
    blueprint default stays for other agents but matches no retired agent."""
    import uuid

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.urls import reverse

    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    key = trust.key_credential_add(actor=world.owner, agent=agent, pem=pem)
    trust.federated_credential_add(actor=world.ga, blueprint=agent.blueprint, issuer=issuer.issuer,
                                   audience=AUDIENCE, subject="system:serviceaccount:agents:fleet")
    _credential, secret = registry.credential_rotate(actor=world.owner, agent=agent)
    client.force_login(world.owner)
    page = client.get(reverse("agent-retire", args=[agent.pk])).content.decode()
    assert f"1 key credential revoked: <span class=\"mono\">{key.kid}</span>" in page
    assert "1 federated credential removed" in page and "system:serviceaccount:agents:cluster-agent" in page
    assert "inherited from its blueprint" in page and "system:serviceaccount:agents:fleet" in page
    assert "2 active client secrets revoked" in page  # the one set-up issued, and the rotated one
    preview = registry.retirement_preview(agent)
    assert [k.pk for k in preview["key_credentials"]] == [key.pk] and len(preview["federated_credentials"]) == 1
    client.post(reverse("agent-retire", args=[agent.pk]))
    agent.refresh_from_db()
    assert agent.status == "retired" and trust.credential_types(agent) == set()
    client.logout()
    client_id = agent.identity.client_id
    now = int(time.time())
    own = jwt.encode({"iss": client_id, "sub": client_id, "aud": assertions.token_endpoint(), "iat": now,
                      "exp": now + 60, "jti": uuid.uuid4().hex}, private, algorithm="ES256")
    refused = [
        _token(client, client_id, own),
        _token(client, client_id, issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)),
        _token(client, client_id, issuer.service_account_token("agents", "fleet", audience=AUDIENCE)),
        client.post("/oauth/token/", {"grant_type": JWT_BEARER, "assertion": issuer.service_account_token(
            "agents", "fleet", audience=AUDIENCE)}, REMOTE_ADDR="127.0.0.1"),
        client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id,
                                      "client_secret": secret}, REMOTE_ADDR="127.0.0.1"),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401, 400, 401], [r.content for r in refused]
    assert not AccessToken.objects.filter(agent=agent, issued_at__gt=agent.retired_at).exists()


def test_r28_a_forged_token_does_not_use_up_a_real_ones_jti(client, agent, issuer):
    """The gate writes an assertion's replay entry before its signature is checked; a token that then fails (here:
    the same iss and jti, signed by a stranger's key) releases it, so the real token is still accepted once."""
    stranger = FederationIssuer()
    claims = {"iss": issuer.issuer, "sub": "system:serviceaccount:agents:cluster-agent", "aud": [AUDIENCE],
              "iat": int(time.time()), "exp": int(time.time()) + 600, "jti": "shared-jti"}
    forged = stranger.sign(claims)
    assert _token(client, agent.identity.client_id, forged).status_code == 401
    assert "signature" in _last_sign_in().reason or "signing key" in _last_sign_in().reason
    real = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE, jti="shared-jti")
    assert _token(client, agent.identity.client_id, real).status_code == 200
    assert _token(client, agent.identity.client_id, real).status_code == 401
    assert "replayed" in _last_sign_in().reason


def test_r28_the_gate_writes_the_replay_entry_in_its_one_redis_command(redis_url, agent, issuer):
    """``request_gate`` with an assertion's entry answers whether this request is the first to present it, in the
    same Redis command as the rate limits; the entry lives until just after the assertion expires."""
    from django.core.cache import cache

    from governance.signin import oauth

    token = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE, lifetime=120)
    entry = assertions.replay_entry(token, time.time())
    first = oauth.request_gate("127.0.0.1", agent.identity.client_id, policy_version=True, replay=entry)
    again = oauth.request_gate("127.0.0.1", agent.identity.client_id, policy_version=True, replay=entry)
    assert (first.replay.first, again.replay.first) == (True, False)
    ttl = oauth._redis().ttl(cache.make_key(entry.key))
    assert 120 < ttl <= 120 + assertions.LEEWAY_SECONDS
    assertions.release(first.replay)
    assert oauth.request_gate("127.0.0.1", agent.identity.client_id, replay=entry).replay.first is True
    assert assertions.replay_entry("not.a-jwt", time.time()) is None



def test_r28_the_verifier_reads_a_replay_entrys_assertion_only_for_that_assertion(agent, issuer):
    """The gate's entry carries the assertion as it was read, and the verifier checks what it carries only when it
    is handed the same assertion: another one (here a forged token) is read, verified and refused on its own."""
    from django.utils import timezone

    now = timezone.now()
    real = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    entry = assertions.replay_entry(real, now.timestamp())._replace(first=True)
    assert entry.jws.token == real
    forged = FederationIssuer().sign({**entry.jws.claims, "jti": "another"})
    refused = assertions.verify_client_assertion(agent.identity.client_id, forged, now, replay=entry)
    assert not refused.ok and ("signature" in refused.reason or "signing key" in refused.reason)
    accepted = assertions.verify_client_assertion(agent.identity.client_id, real, now, replay=entry)
    assert accepted.ok and accepted.agent_id == agent.pk
    assert assertions.replay_entry("eyJhbGciOiJub25lIn0.e30.", now.timestamp()) is None  # alg none: no entry

REPLAY_PROBE = """
import os, sys, time
import django
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client_id, token, start = sys.argv[1], sys.stdin.read(), float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
response = Client().post("/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id,
                         "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                         "client_assertion": token}, secure=True, REMOTE_ADDR="127.0.0.1")
print(response.status_code)
"""


@pytest.mark.django_db(transaction=True)
def test_r28_a_token_is_accepted_once_across_two_processes(postgres, redis_url, agent, issuer, settings):
    """Two processes (each with its own memory) present the same service-account token at the same moment: the
    replay entry lives in Redis, so exactly one gets a token and the other's refusal says it was replayed."""
    import os
    import subprocess
    import sys

    from django.db import connection

    database = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
                                         f"{database['NAME']}",
           "REDIS_URL": redis_url, "OAUTH_ALLOW_LOOPBACK_HTTP": "1", "PORTAL_BASE_URL": settings.PORTAL_BASE_URL,
           "DJANGO_SETTINGS_MODULE": "portal.settings"}
    token = issuer.service_account_token("agents", "cluster-agent", audience=AUDIENCE)
    start = str(time.time() + 6)
    probes = [subprocess.Popen([sys.executable, "-c", REPLAY_PROBE, agent.identity.client_id, start], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    results = [probe.communicate(token, timeout=120) for probe in probes]
    statuses = sorted(out.strip().splitlines()[-1] for out, _err in results if out.strip())
    assert statuses == ["200", "401"], results
    outcomes = sorted(SignIn.objects.filter(agent=agent).values_list("outcome", flat=True))
    assert outcomes == ["failure", "success"]
    assert "replayed" in SignIn.objects.get(agent=agent, outcome="failure").reason
