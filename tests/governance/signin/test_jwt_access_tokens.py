"""R25: every access token is a JWT (RFC 9068) signed by a portal-held key and published in the JWKS; revocation and
the "inactive at the next introspection" guarantees of R22 hold for it by its ``jti`` (docs/oauth.md, "Access tokens
are JWTs"). Tokens are checked with independent libraries (joserfc and PyJWT), not with the portal's own verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from agents import registry
from agents.models import Agent
from governance.runs import services as runs
from governance.signin import tokens
from governance.signin.models import AccessToken, SignIn
from governance.signing import keys
from governance.signing.models import SigningKey
from portal import directory
from portal.models import AuditEvent, DirectoryRole, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token"}
PUBLIC_MEMBERS = {"kty", "crv", "x", "y", "kid", "alg", "use"}


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _secret(agent: Agent) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    return credential.identity.client_id, secret


def _token(client, client_id: str, secret: str, **data):
    data = {"grant_type": "client_credentials", **data}
    return client.post("/oauth/token/", data, HTTP_AUTHORIZATION=_basic(client_id, secret))


def _issued(client, client_id: str, secret: str, **data) -> str:
    response = _token(client, client_id, secret, **data)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def resource_server():
    server, secret = tokens.resource_server_create(actor=None, name="JWT test resource server")
    return server.client_id, secret


def _introspect(client, resource_server, value: str) -> dict:
    response = client.post("/oauth/introspect/", {"token": value}, HTTP_AUTHORIZATION=_basic(*resource_server))
    assert response.status_code == 200, response.content
    return response.json()


def _person(username: str, rights=("User.Read.All",)):
    person = UserFactory(username=username)
    role = DirectoryRole.objects.create(key=f"{username}-role", name=f"{username} role")
    role.permissions.set(Permission.objects.filter(name__in=list(rights), kind="delegated"))
    directory.role_assign(actor=None, user=person, role=role)
    return person


def _published_jwks(client) -> dict:
    """The JWKS as a resource server gets it: from the JWKS URL once it is routed, else ``keys.jwks()``."""
    expected = keys.jwks()
    try:
        url = reverse("oauth-jwks")
    except NoReverseMatch:
        return expected
    response = client.get(url)
    assert response.status_code == 200
    assert response.json() == expected
    return response.json()


def _verify_independently(value: str, jwks: dict, *, audience: str) -> dict:
    """Verify ``value`` with joserfc and with PyJWT against ``jwks``; both must agree on the claims."""
    header = jwt.get_unverified_header(value)
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256"
    assert header["kid"] in {key["kid"] for key in jwks["keys"]}

    key_set = KeySet.import_key_set(jwks)
    token = jose_jwt.decode(value, key_set, algorithms=["ES256"])
    assert token.header == {"alg": "ES256", "typ": "at+jwt", "kid": header["kid"]}
    JWTClaimsRegistry(iss={"essential": True, "value": settings.PORTAL_BASE_URL},
                      aud={"essential": True, "value": audience}, sub={"essential": True},
                      jti={"essential": True}, exp={"essential": True}, iat={"essential": True}).validate(token.claims)

    signing_key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(value, key=signing_key, algorithms=["ES256"], audience=audience,
                        issuer=settings.PORTAL_BASE_URL,
                        options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"], "strict_aud": True})
    assert claims == token.claims
    assert claims["iss"] == settings.PORTAL_BASE_URL  # byte for byte (R24): no slash added or dropped
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 32
    assert isinstance(claims["iat"], int) and isinstance(claims["exp"], int) and claims["iat"] < claims["exp"]
    stored = AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"]))  # only the jti's hash is kept
    assert stored.audience == audience and sorted(stored.scopes) == sorted(claims["scope"].split())
    return claims


# --- every grant ----------------------------------------------------------------------------------------------------
def test_r25_every_grant_issues_a_jwt_verified_by_an_independent_library(client, registry_world, monkeypatch):
    w = registry_world
    portal = settings.PORTAL_BASE_URL

    # client credentials: the agent's own token, sub = its client id
    client_id, secret = _secret(w.agent)
    own = _issued(client, client_id, secret)

    # a person's own token, then token exchange by an agent acting for that person
    person = _person("jwt-person")
    _row, personal = tokens.personal_token_issue(actor=person)
    delegate = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("JwtDelegate", permissions=("User.Read.All",)), "jwt-delegate", sponsors=[w.owner],
        owners=[w.owner])).agent
    delegate_id, delegate_secret = _secret(delegate)
    exchanged = _issued(client, delegate_id, delegate_secret, **EXCHANGE, subject_token=personal)

    # a run's token, as the external executor receives it
    handed: dict = {}

    def executor(url, *, json, **_kwargs):
        handed.update(json)
        return httpx.Response(202, json={}, request=httpx.Request("POST", url))

    monkeypatch.setattr(runs.httpx, "post", executor)
    run = runs.run_start(actor=w.owner, session=runs.session_open(actor=w.owner, agent=w.agent))
    runs.run_execute(run.pk)
    run_token = handed["access_token"]

    jwks = _published_jwks(client)
    assert jwks["keys"] and all(set(key) == PUBLIC_MEMBERS for key in jwks["keys"])

    claims = _verify_independently(own, jwks, audience=portal)
    assert claims["sub"] == client_id and claims["client_id"] == client_id and claims["scope"] == "User.Read.All"
    assert claims["agent_id"] == w.agent.pk and claims["blueprint_id"] == w.agent.blueprint_id
    assert "act" not in claims and claims["exp"] - claims["iat"] == settings.ACCESS_TOKEN_TTL

    claims = _verify_independently(personal, jwks, audience=portal)
    assert claims["sub"] == str(person.oauth_subject) and claims["sub"] != person.username
    assert claims["client_id"] == "portal" and claims["scope"] == "User.Read.All"
    assert "agent_id" not in claims and "act" not in claims

    claims = _verify_independently(exchanged, jwks, audience=portal)
    assert claims["sub"] == str(person.oauth_subject) and claims["act"] == {"sub": delegate_id}
    assert claims["client_id"] == delegate_id and claims["scope"] == "User.Read.All"
    assert claims["agent_id"] == delegate.pk and claims["blueprint_id"] == delegate.blueprint_id

    claims = _verify_independently(run_token, jwks, audience=portal)
    assert claims["sub"] == client_id and claims["client_id"] == client_id and claims["scope"] == "User.Read.All"
    assert claims["agent_id"] == w.agent.pk and claims["blueprint_id"] == w.agent.blueprint_id
    assert AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"])).run_id == run.pk

    assert len({tokens.claims_of(v)["jti"] for v in (own, personal, exchanged, run_token)}) == 4


# --- introspection and revocation by jti ----------------------------------------------------------------------------
def test_r25_introspection_and_revocation_work_by_jti(client, registry_world, resource_server):
    w = registry_world
    client_id, secret = _secret(w.agent)
    value = _issued(client, client_id, secret)
    kept = _issued(client, client_id, secret)
    claims = tokens.claims_of(value)

    answer = _introspect(client, resource_server, value)
    assert answer == {**claims, "active": True, "token_type": "Bearer", "actor_kind": "agent"}  # the JWT's own claims
    assert "username" not in answer

    response = client.post("/oauth/revoke/", {"token": value}, HTTP_AUTHORIZATION=_basic(client_id, secret))
    assert response.status_code == 200
    assert _introspect(client, resource_server, value) == {"active": False}
    assert tokens.claims_of(value) == claims  # still a well-signed JWT: the row, found by jti, says it is revoked
    row = AccessToken.objects.get(token_hash=tokens.hash_token(claims["jti"]))
    assert row.revoked_at is not None and row.revoked_reason == "revoked by the client"
    assert _introspect(client, resource_server, kept)["active"] is True  # only that jti was revoked
    assert client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {value}").status_code == 401

    # a person's token: introspection names the person by ``username`` beside the opaque ``sub``
    person = _person("introspected")
    _row, personal = tokens.personal_token_issue(actor=person)
    answer = _introspect(client, resource_server, personal)
    assert answer["sub"] == str(person.oauth_subject) and answer["username"] == "introspected"
    assert answer["actor_kind"] == "user"


def test_r25_r22_guarantees_hold_for_jwts_by_jti(client, approval_world, resource_server):
    """R22 for JWTs: each event makes exactly the tokens it concerns inactive at the next introspection, although
    every one of them still carries a valid signature and an unexpired ``exp``. (The single-event versions live in
    test_oauth.py; this one checks that the events act on the right jtis among several live tokens.)"""
    from governance.access import services as access_packages

    w = approval_world
    access_packages.assignment_decide(actor=w.owner, assignment=w.assignment, approve=True)
    client_id, secret = _secret(w.agent)
    carrying = _issued(client, client_id, secret)
    plain = _issued(client, client_id, secret, scope="User.Read.All")

    person = _person("exchanged-person")
    _row, personal = tokens.personal_token_issue(actor=person)
    delegate = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("GuaranteeDelegate", permissions=("User.Read.All",)), "guarantee-delegate",
        sponsors=[w.owner], owners=[w.owner])).agent
    delegate_id, delegate_secret = _secret(delegate)
    exchanged = _issued(client, delegate_id, delegate_secret, **EXCHANGE, subject_token=personal)
    delegate_own = _issued(client, delegate_id, delegate_secret)
    retiring = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("Retiring", permissions=("User.Read.All",)), "retiring", sponsors=[w.owner],
        owners=[w.owner])).agent
    retiring_token = _issued(client, *_secret(retiring))

    def active(value: str) -> bool:
        assert tokens.claims_of(value) is not None  # signature, issuer and exp hold throughout
        return _introspect(client, resource_server, value)["active"]

    everything = [carrying, plain, personal, exchanged, delegate_own, retiring_token]
    assert all(active(v) for v in everything)

    access_packages.assignment_revoke(actor=w.owner, assignment=w.assignment, reason="done")  # end the assignment
    assert [active(v) for v in everything] == [False, True, True, True, True, True]

    directory.user_deactivate(actor=w.ga, user=person)  # the person of the exchanged token
    assert [active(v) for v in everything] == [False, True, False, False, True, True]

    registry.agent_retire(actor=w.owner, agent=retiring)
    assert [active(v) for v in everything] == [False, True, False, False, True, False]

    registry.agent_disable(actor=w.owner, agent=delegate)
    assert [active(v) for v in everything] == [False, True, False, False, False, False]
    registry.agent_disable(actor=w.owner, agent=w.agent)
    assert not any(active(v) for v in everything)


# --- forgeries ------------------------------------------------------------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _json_part(data: dict) -> str:
    return _b64(json.dumps(data, separators=(",", ":")).encode())


def _es256(private_key: ec.EllipticCurvePrivateKey, header: dict, claims: dict) -> str:
    signing_input = f"{_json_part(header)}.{_json_part(claims)}"
    r, s = decode_dss_signature(private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _hs256(secret: bytes, header: dict, claims: dict) -> str:
    """The algorithm-confusion forgery: an HMAC keyed with the published public key."""
    signing_input = f"{_json_part(header)}.{_json_part(claims)}"
    return f"{signing_input}.{_b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def _portal_private_key(kid: str) -> ec.EllipticCurvePrivateKey:
    """The portal's own signing key, to make tokens that are well signed but wrong in one other respect."""
    pem = keys._fernet().decrypt(bytes(SigningKey.objects.get(kid=kid).private_key))
    return serialization.load_pem_private_key(pem, password=None)


def test_r25_a_forged_or_altered_token_is_refused(client, world, resource_server):
    blueprint = make_blueprint("JwtReader", permissions=("Portal.Agents.Read.All", "User.Read.All"))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "jwt-reader", sponsors=[world.owner], owners=[world.owner])).agent
    client_id, secret = _secret(agent)
    genuine = _issued(client, client_id, secret, scope="User.Read.All")
    header_b64, payload_b64, signature_b64 = genuine.split(".")
    header, claims = jwt.get_unverified_header(genuine), tokens.claims_of(genuine)
    portal_key = _portal_private_key(header["kid"])
    public_pem = portal_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    # the genuine token works everywhere, so each refusal below is the forgery's doing
    assert _introspect(client, resource_server, genuine)["active"] is True
    assert tokens.claims_of(_es256(portal_key, header, claims)) == claims  # re-signing as is changes nothing

    widened = {**claims, "scope": "User.Read.All Portal.Agents.Read.All"}
    forgeries = {
        "changed payload": f"{header_b64}.{_json_part(widened)}.{signature_b64}",
        "changed signature": f"{header_b64}.{payload_b64}.{signature_b64[:-4]}AAAA",
        "another key, same kid": _es256(ec.generate_private_key(ec.SECP256R1()), header, widened),
        "unknown kid": _es256(ec.generate_private_key(ec.SECP256R1()), {**header, "kid": "not-a-key"}, claims),
        "alg none": f"{_json_part({**header, 'alg': 'none'})}.{payload_b64}.",
        "alg none, no kid": f"{_json_part({'alg': 'none', 'typ': 'at+jwt'})}.{_json_part(widened)}.",
        "alg HS256 keyed with the public key": _hs256(public_pem, {**header, "alg": "HS256"}, widened),
        "typ JWT": _es256(portal_key, {**header, "typ": "JWT"}, claims),
        "no typ": _es256(portal_key, {"alg": "ES256", "kid": header["kid"]}, claims),
        "expired": _es256(portal_key, header, {**claims, "exp": int(time.time()) - 1}),
        "issuer with a slash": _es256(portal_key, header, {**claims, "iss": settings.PORTAL_BASE_URL + "/"}),
        "truncated": ".".join(genuine.split(".")[:2]),
    }
    AccessToken.objects.filter(token_hash=tokens.hash_token(claims["jti"])).update(
        expires_at=timezone.now() + timedelta(hours=1))  # the row outlives the forged exp: only the JWT is expired
    for name, forged in forgeries.items():
        assert tokens.claims_of(forged) is None, name
        assert _introspect(client, resource_server, forged) == {"active": False}, name
        assert client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {forged}").status_code == 401, name
        refused = _token(client, client_id, secret, **EXCHANGE, subject_token=forged)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", name
        assert client.post("/oauth/revoke/", {"token": forged}, HTTP_AUTHORIZATION=_basic(client_id, secret)) \
            .status_code == 200, name  # RFC 7009: answered 200, but nothing is revoked
    assert _introspect(client, resource_server, genuine)["active"] is True
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(forgeries["changed payload"], key=jwt.PyJWKSet.from_dict(keys.jwks())[header["kid"]],
                   algorithms=["ES256"], audience=claims["aud"])


# --- secrecy of the signing keys ------------------------------------------------------------------------------------
def test_r25_no_private_key_material_in_the_jwks_logs_or_audit(client, registry_world, resource_server, caplog):
    caplog.set_level(logging.DEBUG)
    w = registry_world
    client_id, secret = _secret(w.agent)
    value = _issued(client, client_id, secret)
    _introspect(client, resource_server, value)
    client.post("/oauth/revoke/", {"token": value}, HTTP_AUTHORIZATION=_basic(client_id, secret))
    kid = jwt.get_unverified_header(value)["kid"]
    published = keys.new_key()  # a second key, published before it signs

    row = SigningKey.objects.get(kid=kid)
    private = _portal_private_key(kid)
    d = private.private_numbers().private_value
    secrets_of_the_key = [
        _b64(d.to_bytes(32, "big")), str(d), format(d, "x"),
        private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode().splitlines()[1],
        bytes(row.private_key).decode(),  # even the encrypted form stays in the database
    ]
    assert b"PRIVATE KEY" not in bytes(row.private_key)  # stored encrypted

    jwks = _published_jwks(client)
    assert {key["kid"] for key in jwks["keys"]} >= {kid, published.kid}
    for key in jwks["keys"]:
        assert set(key) == PUBLIC_MEMBERS and key["kty"] == "EC" and "d" not in key
    assert row.public_jwk == next(key for key in jwks["keys"] if key["kid"] == kid)

    places = {
        "jwks": json.dumps(jwks),
        "logs": caplog.text,
        "audit": json.dumps(list(AuditEvent.objects.values()), default=str),
        "sign-in log": json.dumps(list(SignIn.objects.values()), default=str),
        "token rows": json.dumps(list(AccessToken.objects.values()), default=str),
    }
    for place, text in places.items():
        for material in secrets_of_the_key:
            assert material not in text, place
        assert value not in text, place
    assert "PRIVATE" not in places["jwks"] + places["audit"]
