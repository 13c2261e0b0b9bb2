"""Signing and verifying the portal's JWTs (RFC 7515 compact JWS, ES256) with keys it generates and keeps.

``sign`` uses the one active key; ``verify`` accepts any key still published (active, published or retired), so a
token signed before a rotation keeps verifying until it expires (docs/design.md, "Signing keys"). Private keys are
stored encrypted (Fernet) with a key derived by HKDF from ``SIGNING_KEY_SECRET`` (default: ``SECRET_KEY``); they are
decrypted in memory only, never logged, audited or published.

Each process keeps the keys it read for ``SIGNING_KEY_CACHE_SECONDS`` (a token request reads no key row); an
unknown ``kid`` makes it read them again at once, at most once a second, so a key published by another process is
seen. Rotation (``governance.signing.rotation``) publishes a key well before it signs, which leaves every process
time to see it.

The JWS is put together here with ``cryptography`` rather than a JOSE library: the format is three base64url parts
and the token endpoint signs on every request, so the header is encoded once per key. Tests verify the tokens with
independent libraries (joserfc, PyJWT) against the published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.signing.choices import KeyState
from governance.signing.models import SigningKey
from portal import audit

ALG = "ES256"
ACCESS_TOKEN_TYP = "at+jwt"
_VERIFYING_STATES = (KeyState.PUBLISHED, KeyState.ACTIVE, KeyState.RETIRED)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _fernet() -> Fernet:
    secret = (getattr(settings, "SIGNING_KEY_SECRET", "") or settings.SECRET_KEY).encode()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"agent-identity-portal signing keys").derive(secret)
    return Fernet(base64.urlsafe_b64encode(derived))


def public_jwk(public_key: ec.EllipticCurvePublicKey, kid: str) -> dict:
    numbers = public_key.public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": _b64(numbers.x.to_bytes(32, "big")),
            "y": _b64(numbers.y.to_bytes(32, "big")), "kid": kid, "alg": ALG, "use": "sig"}


def new_key(*, actor=None, state: str = KeyState.PUBLISHED, now=None) -> SigningKey:
    """Generate a key pair and store it (the private half encrypted). The caller audits and sets the state's
    times; this only makes the row."""
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    kid = secrets.token_urlsafe(12)
    now = now or timezone.now()
    key = SigningKey.objects.create(kid=kid, alg=ALG, public_jwk=public_jwk(private.public_key(), kid),
                                    private_key=_fernet().encrypt(pem), state=state, created_by=actor,
                                    created_at=now, activated_at=now if state == KeyState.ACTIVE else None)
    forget()
    return key


def can_decrypt(private_key) -> bool:
    """Whether a stored private key opens under the current secret (it does not after ``SIGNING_KEY_SECRET`` or
    ``SECRET_KEY`` changed: docs/oauth.md, "Signing keys")."""
    try:
        _fernet().decrypt(bytes(private_key))
    except InvalidToken:
        return False
    return True


def remove_unusable(*, now=None) -> int:
    """Remove, at once, every published, active or retired key whose private half no longer opens under the current
    secret (docs/oauth.md, "Signing keys"): a changed secret is treated like a compromise, so the tokens those keys
    signed stop verifying. One audit event per key; the caller makes a new active key. Runs in the caller's
    transaction."""
    now = now or timezone.now()
    removed = 0
    for key in SigningKey.objects.select_for_update().filter(state__in=_VERIFYING_STATES).order_by("pk"):
        if can_decrypt(key.private_key):
            continue
        before = key.state
        key.state, key.private_key, key.removed_at = KeyState.REMOVED, b"", now
        key.save(update_fields=["state", "private_key", "removed_at"])
        audit.record(actor=None, action="signing_key.remove", target=key,
                     before={"state": before}, after={"state": key.state, "kid": key.kid,
                                                      "reason": "unreadable under the current secret"})
        removed += 1
    if removed:
        forget()
    return removed


# --- the process's view of the keys -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Signer:
    kid: str
    header: str  # the encoded protected header
    private: ec.EllipticCurvePrivateKey


_lock = threading.Lock()
_state: dict = {"loaded": 0.0, "signer": None, "public": {}, "reread": 0.0}


def forget() -> None:
    """Drop this process's cached keys (after a change here; other processes catch up within the cache time)."""
    _state["loaded"] = 0.0


def _load(now: float) -> None:
    rows = list(SigningKey.objects.filter(state__in=_VERIFYING_STATES).values_list("kid", "state", "public_jwk",
                                                                                   "private_key"))
    public, signer = {}, None
    for kid, state, jwk, private in rows:
        x, y = int.from_bytes(_unb64(jwk["x"]), "big"), int.from_bytes(_unb64(jwk["y"]), "big")
        public[kid] = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        if state == KeyState.ACTIVE:
            try:
                pem = _fernet().decrypt(bytes(private))
            except InvalidToken:  # encrypted under another secret: this key cannot sign here
                continue
            header = _b64(json.dumps({"alg": ALG, "typ": ACCESS_TOKEN_TYP, "kid": kid},
                                     separators=(",", ":")).encode())
            signer = _Signer(kid, header, serialization.load_pem_private_key(pem, password=None))
    _state.update(loaded=now, signer=signer, public=public)


def _fresh(now: float) -> dict:
    if now - _state["loaded"] > settings.SIGNING_KEY_CACHE_SECONDS:
        with _lock:
            if now - _state["loaded"] > settings.SIGNING_KEY_CACHE_SECONDS:
                _load(now)
    return _state


def _signer() -> _Signer:
    state = _fresh(time.monotonic())
    if state["signer"] is None:  # no active key yet (a new installation): make the first one
        try:
            with transaction.atomic():
                remove_unusable()  # an active key encrypted under an earlier secret cannot sign: replace it
                if not SigningKey.objects.select_for_update().filter(state=KeyState.ACTIVE).exists():
                    new_key(state=KeyState.ACTIVE)  # an installation's first key (the job audits the ones it makes)
        except IntegrityError:  # another process made the first key at the same moment (one active key): use it
            pass
        forget()
        state = _fresh(time.monotonic())
        if state["signer"] is None:
            raise RuntimeError("No signing key can be used: the active key was encrypted under another secret.")
    return state["signer"]


# --- signing and verifying ----------------------------------------------------------------------------------------
def sign(claims: dict) -> str:
    """A compact JWS of ``claims`` (an access token: ``typ`` at+jwt) signed with the active key."""
    signer = _signer()
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{signer.header}.{payload}".encode()
    r, s = decode_dss_signature(signer.private.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signer.header}.{payload}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("ey")


def verify(token: str, *, now: float | None = None) -> dict | None:
    """The claims of an access token this portal signed, if its signature, type, issuer and expiry hold; else
    None. (Whether it was revoked is for ``governance.signin.tokens`` to say, by its ``jti``.)"""
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        if header.get("alg") != ALG or header.get("typ") != ACCESS_TOKEN_TYP:
            return None
        kid = header.get("kid")
        signature = _unb64(signature_b64)
    except (ValueError, TypeError, AttributeError):
        return None
    if not isinstance(kid, str) or len(signature) != 64:
        return None
    monotonic = time.monotonic()
    key = _fresh(monotonic)["public"].get(kid)
    if key is None and monotonic - _state["reread"] > 1:  # a key another process just published
        _state["reread"] = monotonic
        forget()
        key = _fresh(monotonic)["public"].get(kid)
    if key is None:
        return None
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, f"{header_b64}.{payload_b64}".encode(), ec.ECDSA(hashes.SHA256()))
        claims = json.loads(_unb64(payload_b64))
    except (InvalidSignature, ValueError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != settings.PORTAL_BASE_URL:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= (now if now is not None else time.time()):
        return None
    return claims


def jwks() -> dict:
    """The published keys (RFC 7517): every key that may have signed a live token, and the next one."""
    keys = SigningKey.objects.filter(state__in=_VERIFYING_STATES).order_by("created_at", "pk") \
        .values_list("public_jwk", flat=True)
    return {"keys": [dict(jwk) for jwk in keys]}


def jti() -> str:
    """A token id: 256 random bits. Only its SHA-256 is stored (``token_hash``), as for every secret."""
    return secrets.token_urlsafe(32)


def hash_jti(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
