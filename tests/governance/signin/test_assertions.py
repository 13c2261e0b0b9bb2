"""R28: the verifier of client assertions (governance.signin.assertions), without HTTP: private_key_jwt and
federated tokens from a local OpenID issuer."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone
from jwt.algorithms import ECAlgorithm

from agents import registry, trust
from devkit.federation_issuer import FederationIssuer
from governance.signin import assertions
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback(settings):
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = True
    settings.PORTAL_BASE_URL = "https://portal.test"
    settings.CLIENT_ASSERTION_MAX_SECONDS = 300
    assertions.forget_keys()
    yield
    assertions.forget_keys()


@pytest.fixture
def agent(world):
    blueprint = make_blueprint("KeyAgent", permissions=("User.Read.All",))
    return registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "key-agent", sponsors=[world.owner], owners=[world.owner_b])).agent


@pytest.fixture
def issuer():
    with FederationIssuer() as running:
        yield running


def _signed(private, client_id, *, kid=None, aud="https://portal.test/oauth/token/", lifetime=60, **extra):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime, "iat": now,
              "jti": str(uuid.uuid4()), **extra}
    return jwt.encode(claims, private, algorithm="ES256", headers={"kid": kid} if kid else None)


def _key(world, agent, **kwargs):
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    credential = trust.key_credential_add(actor=world.owner, agent=agent, jwk=jwk, **kwargs)
    return private, credential


def test_r28_private_key_jwt_verifies_and_refuses_replay(world, agent):
    private, credential = _key(world, agent)
    client_id = agent.identity.client_id
    assertion = _signed(private, client_id, kid=credential.kid)
    first = assertions.verify_client_assertion(client_id, assertion, timezone.now())
    assert first.ok and first.credential_type == "key" and first.agent_id == agent.pk
    again = assertions.verify_client_assertion(client_id, assertion, timezone.now())
    assert again.error == "invalid_client" and "replayed" in again.reason


@pytest.mark.parametrize(("change", "reason"), [
    ({"aud": "https://elsewhere.test"}, "wrong audience"),
    ({"lifetime": 3600}, "more than 300 seconds"),
    ({"lifetime": -120}, "expired"),
    ({"iss": "someone-else"}, "iss and sub"),
])
def test_r28_private_key_jwt_checks_claims(world, agent, change, reason):
    private, credential = _key(world, agent)
    client_id = agent.identity.client_id
    kwargs = dict(change)
    if "iss" in kwargs:
        assertion = _signed(private, client_id, kid=credential.kid, iss=kwargs.pop("iss"))
        result = assertions.verify_client_assertion(client_id, assertion, timezone.now())
    else:
        result = assertions.verify_client_assertion(client_id, _signed(private, client_id, **kwargs), timezone.now())
    assert result.error == "invalid_client" and reason in result.reason, result


def test_r28_private_key_jwt_refuses_an_unregistered_key_and_a_revoked_one(world, agent):
    private, credential = _key(world, agent)
    client_id = agent.identity.client_id
    stranger = ec.generate_private_key(ec.SECP256R1())
    result = assertions.verify_client_assertion(client_id, _signed(stranger, client_id), timezone.now())
    assert result.error == "invalid_client" and "signature" in result.reason
    trust.key_credential_revoke(actor=world.owner, credential=credential)
    result = assertions.verify_client_assertion(client_id, _signed(private, client_id), timezone.now())
    assert result.error == "invalid_client" and result.reason == "no active key credential"


def test_r28_federated_token_matches_a_rule(world, agent, issuer):
    trust.federated_credential_add(actor=world.owner, agent=agent, issuer=issuer.issuer,
                                   subject="system:serviceaccount:agents:key-agent", audience="https://portal.test")
    client_id = agent.identity.client_id
    token = issuer.service_account_token("agents", "key-agent", audience="https://portal.test")
    result = assertions.verify_client_assertion(client_id, token, timezone.now())
    assert result.ok and result.credential_type == "federated" and result.issuer == issuer.issuer
    grant = assertions.verify_grant_assertion("", issuer.service_account_token(
        "agents", "key-agent", audience="https://portal.test"), timezone.now())
    assert grant.ok and grant.client_id == client_id
    assert assertions.verify_client_assertion(client_id, token, timezone.now()).reason.startswith("assertion replayed")


def test_r28_federated_keys_are_cached(world, agent, issuer):
    trust.federated_credential_add(actor=world.owner, agent=agent, issuer=issuer.issuer,
                                   subject="system:serviceaccount:agents:key-agent", audience="https://portal.test")
    client_id = agent.identity.client_id
    for _ in range(3):
        token = issuer.service_account_token("agents", "key-agent", audience="https://portal.test")
        assert assertions.verify_client_assertion(client_id, token, timezone.now()).ok
    assert issuer.fetches == 2  # the discovery document and the JWKS, once


def test_r28_key_expiry_is_bounded(world, agent):
    with pytest.raises(Exception, match="at most"):
        _key(world, agent, expires_at=timezone.now() + timedelta(days=400))


def test_r28_an_issuers_keys_are_kept_per_process_until_the_shared_copy_expires_and_bounded(issuer, monkeypatch,
                                                                                          settings):
    """The parsed keys live in this process as long as the shared cache's copy (the same wall-clock expiry), so a
    token costs no fetch and no cache read; past the expiry they are read again; at most MAX_KEPT_SOURCES sources are
    kept (the oldest written goes first)."""
    from django.core.cache import cache

    settings.FEDERATION_JWKS_CACHE_SECONDS = 60
    keys = assertions._keys(issuer.issuer, issuer=True)
    assert keys and issuer.fetches == 2  # the discovery document and the JWKS
    shared = cache.get(assertions._cache_key(issuer.issuer))
    assert assertions._memo[issuer.issuer][0] == shared["expires"]
    assert abs(shared["expires"] - (time.time() + 60)) < 5
    cache.delete(assertions._cache_key(issuer.issuer))
    assert assertions._keys(issuer.issuer, issuer=True) is keys and issuer.fetches == 2  # this process's copy
    now = time.time()
    monkeypatch.setattr(assertions.time, "time", lambda: now + 61)  # past the shared copy's expiry
    assert assertions._keys(issuer.issuer, issuer=True) is not keys and issuer.fetches == 4
    monkeypatch.setattr(assertions, "MAX_KEPT_SOURCES", 3)
    for n in range(5):
        assertions._keep(f"https://issuer-{n}.example", now + 120, {})
    assert list(assertions._memo) == [f"https://issuer-{n}.example" for n in (2, 3, 4)]
