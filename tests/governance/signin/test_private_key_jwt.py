"""R28: private_key_jwt (RFC 7523 §2.2) with a real client library: authlib's ``PrivateKeyJWT`` client
authentication against the running portal. Token issued; replay refused; an expired key refused; keys rotate with
overlap."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.utils import timezone
from joserfc.jwk import ECKey

from agents import registry, trust
from agents.models import KeyCredential
from governance.signin.models import SignIn
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db(transaction=True)


def _keypair() -> tuple[str, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private_pem, public_pem


@pytest.fixture
def portal(live_server, settings, world):
    settings.PORTAL_BASE_URL = live_server.url
    blueprint = make_blueprint("KeyedAgent", permissions=("User.Read.All",))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "keyed-agent", sponsors=[world.owner], owners=[world.owner_b])).agent
    return live_server.url + "/oauth/token/", agent, world


LIFETIME = 120  # seconds: within CLIENT_ASSERTION_MAX_SECONDS (authlib's own default is an hour)


def _fetch(token_url: str, client_id: str, private_pem: str, *, lifetime: int | None = LIFETIME, **claims) -> dict:
    """A client-credentials token through authlib's ``PrivateKeyJWT``. Its ``sign`` passes no lifetime, but the claims
    it is given are laid over its own, so a short-lived assertion is ``claims={"exp": now + lifetime}`` on an auth
    object made for this request (``lifetime=None``: authlib's default hour)."""
    if lifetime is not None:
        claims.setdefault("exp", int(time.time()) + lifetime)
    # An EC key is handed over as a key object (authlib reads a PEM string as RSA)
    session = OAuth2Session(client_id, ECKey.import_key(private_pem),
                            token_endpoint_auth_method=PrivateKeyJWT(token_url, alg="ES256", claims=claims or None))
    try:
        return session.fetch_token(token_url, grant_type="client_credentials")
    except OAuthError as error:
        last = SignIn.objects.order_by("-pk").first()
        error.reason = last.reason if last else ""  # what the sign-in log says, for the assertions below
        raise
    finally:
        session.close()


def test_r28_authlib_private_key_jwt_gets_a_token(portal):
    token_url, agent, world = portal
    private_pem, public_pem = _keypair()
    trust.key_credential_add(actor=world.owner, agent=agent, pem=public_pem)
    token = _fetch(token_url, agent.identity.client_id, private_pem)
    assert token["access_token"] and token["scope"] == "User.Read.All"
    sign_in = SignIn.objects.get(outcome="success")
    assert sign_in.credential_type == "key" and sign_in.agent_id == agent.pk


def test_r28_authlib_private_key_jwt_replay_refused(portal):
    token_url, agent, world = portal
    private_pem, public_pem = _keypair()
    trust.key_credential_add(actor=world.owner, agent=agent, pem=public_pem)
    assert _fetch(token_url, agent.identity.client_id, private_pem, jti="one-time")["access_token"]
    with pytest.raises(OAuthError) as refused:
        _fetch(token_url, agent.identity.client_id, private_pem, jti="one-time")
    assert refused.value.error == "invalid_client"
    assert "replayed" in SignIn.objects.get(outcome="failure").reason


def test_r28_authlib_private_key_jwt_expired_key_refused(portal):
    token_url, agent, world = portal
    private_pem, public_pem = _keypair()
    key = trust.key_credential_add(actor=world.owner, agent=agent, pem=public_pem)
    past = timezone.now() - timedelta(minutes=1)
    KeyCredential.objects.filter(pk=key.pk).update(created_at=past - timedelta(days=1), expires_at=past)
    with pytest.raises(OAuthError) as refused:
        _fetch(token_url, agent.identity.client_id, private_pem)
    assert refused.value.error == "invalid_client"
    assert SignIn.objects.get(outcome="failure").reason == "no active key credential"


def test_r28_authlib_private_key_jwt_rotation_overlap(portal):
    token_url, agent, world = portal
    old_private, old_public = _keypair()
    new_private, new_public = _keypair()
    old = trust.key_credential_add(actor=world.owner, agent=agent, pem=old_public)
    trust.key_credential_add(actor=world.owner, agent=agent, pem=new_public)
    assert _fetch(token_url, agent.identity.client_id, old_private)["access_token"]  # both keys work meanwhile
    assert _fetch(token_url, agent.identity.client_id, new_private)["access_token"]
    past = timezone.now() - timedelta(seconds=1)
    KeyCredential.objects.filter(pk=old.pk).update(created_at=past - timedelta(days=1), expires_at=past)
    with pytest.raises(OAuthError):
        _fetch(token_url, agent.identity.client_id, old_private)
    assert _fetch(token_url, agent.identity.client_id, new_private)["access_token"]


def test_r28_authlib_default_hour_long_assertion_is_refused_and_the_window_is_configurable(portal, settings):
    """An assertion is a one-time proof with a short window (``CLIENT_ASSERTION_MAX_SECONDS``, 300 s by default):
    authlib's default hour-long assertion is refused with the reason logged; raising the setting admits it."""
    token_url, agent, world = portal
    private_pem, public_pem = _keypair()
    trust.key_credential_add(actor=world.owner, agent=agent, pem=public_pem)
    assert settings.CLIENT_ASSERTION_MAX_SECONDS == 300
    with pytest.raises(OAuthError) as refused:
        _fetch(token_url, agent.identity.client_id, private_pem, lifetime=None)
    assert refused.value.error == "invalid_client"
    assert SignIn.objects.get(outcome="failure").reason == "the assertion expires more than 300 seconds ahead"
    now = int(time.time())
    with pytest.raises(OAuthError):  # exp near, but issued long before: it lived longer than the window
        _fetch(token_url, agent.identity.client_id, private_pem, iat=now - 900, exp=now + 60)
    assert SignIn.objects.filter(outcome="failure").latest("at").reason == \
        "the assertion lives longer than 300 seconds (exp - iat)"
    settings.CLIENT_ASSERTION_MAX_SECONDS = 3600
    assert _fetch(token_url, agent.identity.client_id, private_pem, lifetime=None)["access_token"]
