"""Verifying client assertions: agents that authenticate without a stored secret (R28; docs/oauth.md, "Agents
without secrets").

Two kinds of JWT reach the token endpoint as an assertion:

* ``private_key_jwt`` (RFC 7523 §2.2): the agent signed it with a key registered as one of its key credentials.
  ``iss`` = ``sub`` = its client id, ``aud`` names our issuer or token endpoint, ``exp`` at most
  ``CLIENT_ASSERTION_MAX_SECONDS`` ahead, ``iat``/``nbf`` not in the future, a ``jti`` never seen before.
* a federated credential's token (workload identity federation): its platform (a Kubernetes cluster, a CI system,
  a cloud) signed it. A rule trusting its ``iss`` must exist (the agent's own or its blueprint's default); the
  issuer's keys come from its OpenID configuration's ``jwks_uri``; ``aud`` must hold the rule's audience and
  ``sub`` match its subject (exactly, or the pattern an administrator allowed). A token is accepted once.

Replay store: the shared cache (Redis, ``SET NX`` with an expiry just past the assertion's ``exp``: ``cache.add``).
When Redis does not answer, ``portal.cache`` serves this process's memory instead; a replay across two processes
is then not seen for as long as Redis is down (the assertion still expires within minutes).

Issuer keys: the discovery document and JWKS are fetched over https (http only on loopback when
``OAUTH_ALLOW_LOOPBACK_HTTP``), at most 64 KiB each, 5 s timeout, no redirects, and kept in the shared cache for
``FEDERATION_JWKS_CACHE_SECONDS`` (and in this process's memory for as long). A ``kid`` that is not among the
keys forces one refetch, at most once every ``REFETCH_SECONDS`` per issuer, so that an issuer's rotated keys are
picked up without letting anyone make the portal fetch on every request.

Nothing here writes to the database or knows HTTP requests; the result is a plain ``Verified`` value.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
import jwt
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from agents import trust
from agents.choices import AgentStatus, CredentialType
from agents.models import FederatedCredential, KeyCredential

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30
MAX_FETCH_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
REFETCH_SECONDS = 5
INVALID_CLIENT = "invalid_client"
INVALID_GRANT = "invalid_grant"


@dataclass(frozen=True)
class Verified:
    """What an assertion proved: the client (and agent) it authenticates and how; or, with ``error``, why not.
    ``reason`` is for the sign-in log and never holds the assertion itself."""

    client_id: str = ""
    agent_id: int | None = None
    identity_id: int | None = None
    credential_type: str = ""
    issuer: str = ""
    error: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


class _Refused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason[:300]


def token_endpoint() -> str:
    return settings.PORTAL_BASE_URL + "/oauth/token/"


def _unverified(assertion: str) -> tuple[dict, dict]:
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _Refused("the assertion is not a JWT") from exc
    if not isinstance(claims, dict):
        raise _Refused("the assertion is not a JWT")
    if header.get("alg") not in ALGORITHMS:
        raise _Refused("the assertion's algorithm is not accepted")
    return header, claims


def _not_seen_before(issuer: str, claims: dict, assertion: str, now: datetime) -> None:
    """Remember the assertion until just after it expires; a second use is refused (``cache.add`` is SET NX)."""
    jti = claims.get("jti")
    marker = jti if isinstance(jti, str) and jti else "sha256:" + hashlib.sha256(assertion.encode()).hexdigest()
    key = "assertion-seen:" + hashlib.sha256(f"{issuer}\n{marker}".encode()).hexdigest()
    ttl = max(1, int(claims["exp"] - now.timestamp()) + LEEWAY_SECONDS)
    if not cache.add(key, 1, timeout=ttl):
        raise _Refused("assertion replayed (its jti was already used)")


def _decode(assertion: str, key, alg: str, now: datetime, audience: list[str] | None) -> dict:
    try:
        return jwt.decode(
            assertion, key.key if isinstance(key, jwt.PyJWK) else key, algorithms=[alg], audience=audience,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp"], "verify_aud": audience is not None, "verify_iat": True,
                     "verify_nbf": True, "verify_exp": False})
    except jwt.InvalidSignatureError as exc:
        raise _Refused("the signature does not verify") from exc
    except jwt.InvalidAudienceError as exc:
        raise _Refused("wrong audience") from exc
    except jwt.ImmatureSignatureError as exc:
        raise _Refused("the assertion is not valid yet (iat or nbf in the future)") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise _Refused(f"the assertion has no {exc.claim}") from exc
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise _Refused("the assertion does not verify") from exc


def _check_expiry(claims: dict, now: datetime, *, max_ahead: int | None) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise _Refused("the assertion has no exp")
    if exp + LEEWAY_SECONDS <= now.timestamp():
        raise _Refused("the assertion has expired")
    if max_ahead is not None and exp - now.timestamp() > max_ahead + LEEWAY_SECONDS:
        raise _Refused(f"the assertion expires more than {max_ahead} seconds ahead")
    iat = claims.get("iat")
    if iat is not None and isinstance(iat, int | float) and iat - LEEWAY_SECONDS > now.timestamp():
        raise _Refused("the assertion is not valid yet (iat in the future)")


# --- fetching keys ----------------------------------------------------------------------------------------------


_memo: dict[str, tuple[float, dict]] = {}  # url → (monotonic expiry, {kid: PyJWK}), this process's copy
_memo_lock = threading.Lock()


def _get(url: str) -> dict:
    problem = trust.fetch_url_problem(url)
    if problem:
        raise _Refused(f"{url[:100]} is not fetched: {problem}")
    try:
        with httpx.Client(follow_redirects=False, timeout=FETCH_TIMEOUT_SECONDS, trust_env=False) as client, \
                client.stream("GET", url, headers={"Accept": "application/json",
                                                     "Accept-Encoding": "identity"}) as response:
            if response.status_code != 200:
                raise _Refused(f"{url[:100]} answered {response.status_code} (redirects are not followed)")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_FETCH_BYTES:
                raise _Refused(f"{url[:100]} is larger than 64 KiB")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_FETCH_BYTES:
                    raise _Refused(f"{url[:100]} is larger than 64 KiB")
    except httpx.HTTPError as exc:
        raise _Refused(f"{url[:100]} could not be fetched") from exc
    try:
        document = json.loads(bytes(body))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused(f"{url[:100]} is not JSON") from exc
    if not isinstance(document, dict):
        raise _Refused(f"{url[:100]} is not a JSON object")
    return document


def _jwks_uri_of(issuer: str) -> str:
    configuration = _get(issuer.rstrip("/") + "/.well-known/openid-configuration")
    if configuration.get("issuer") != issuer:
        raise _Refused("the issuer's OpenID configuration names another issuer")
    uri = configuration.get("jwks_uri")
    if not isinstance(uri, str):
        raise _Refused("the issuer's OpenID configuration has no jwks_uri")
    return uri


def _parse_keys(document: dict) -> dict:
    keys = {}
    for raw in document.get("keys") or []:
        if not isinstance(raw, dict) or trust.PRIVATE_MEMBERS & set(raw) or raw.get("use", "sig") != "sig":
            continue
        try:
            keys[str(raw.get("kid", ""))] = jwt.PyJWK.from_dict(raw)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue
    return keys


def _cache_key(source: str) -> str:
    return "federation-jwks:" + hashlib.sha256(source.encode()).hexdigest()


def _keys(source: str, *, issuer: bool, refresh: bool = False) -> dict:
    """The signing keys (kid → PyJWK) of an issuer (``issuer``: found through its OpenID configuration) or at a
    JWKS URL: this process's copy, else the shared cache, else fetched. ``refresh`` fetches again unless that was
    done for this source in the last ``REFETCH_SECONDS``."""
    ttl = settings.FEDERATION_JWKS_CACHE_SECONDS
    key = _cache_key(source)
    if refresh:
        if not cache.add(key + ":refetch", 1, timeout=REFETCH_SECONDS):
            return _keys(source, issuer=issuer)
    else:
        held = _memo.get(source)
        if held and held[0] > time.monotonic():
            return held[1]
        document = cache.get(key)
        if document is not None:
            keys = _parse_keys(document)
            with _memo_lock:
                _memo[source] = (time.monotonic() + ttl, keys)
            return keys
    document = _get(_jwks_uri_of(source) if issuer else source)
    cache.set(key, document, timeout=ttl)
    keys = _parse_keys(document)
    with _memo_lock:
        _memo[source] = (time.monotonic() + ttl, keys)
    return keys


def forget_keys() -> None:
    """Drop this process's copies of fetched keys (tests, the bench)."""
    with _memo_lock:
        _memo.clear()


def _pick(keys: dict, kid: str | None):
    if kid:
        return keys.get(kid)
    return keys.get("") or (next(iter(keys.values())) if len(keys) == 1 else None)


def _key_for(source: str, kid: str | None, *, issuer: bool):
    found = _pick(_keys(source, issuer=issuer), kid)
    if found is None:  # perhaps the issuer rotated its keys: look again (at most every REFETCH_SECONDS)
        found = _pick(_keys(source, issuer=issuer, refresh=True), kid)
    if found is None:
        raise _Refused("the token's signing key is not among the issuer's keys")
    return found


# --- private_key_jwt --------------------------------------------------------------------------------------------


def _private_key_jwt(client_id: str, assertion: str, header: dict, claims: dict, now: datetime) -> Verified:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _Refused("iss and sub of the assertion must both be the client id")
    keys = list(KeyCredential.objects.filter(identity__client_id=client_id, revoked_at__isnull=True,
                                             expires_at__gt=now).select_related("identity"))
    if not keys:
        raise _Refused("no active key credential")
    kid = header.get("kid")
    chosen = [k for k in keys if k.kid == kid] or keys
    audience = [settings.PORTAL_BASE_URL, token_endpoint()]
    last: _Refused | None = None
    for credential in chosen:
        try:
            if credential.jwks_uri:
                key = _key_for(credential.jwks_uri, kid, issuer=False)
            else:
                key = jwt.PyJWK.from_dict(credential.public_jwk)
            _decode(assertion, key, header["alg"], now, audience)
        except _Refused as refused:
            last = refused
            if refused.reason == "wrong audience":
                break
            continue
        _check_expiry(claims, now, max_ahead=settings.CLIENT_ASSERTION_MAX_SECONDS)
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise _Refused("the assertion has no jti")
        _not_seen_before(client_id, claims, assertion, now)
        return Verified(client_id=client_id, identity_id=credential.identity_id,
                        agent_id=credential.identity.agent_id, credential_type=CredentialType.KEY)
    raise last or _Refused("the signature does not verify")


# --- federated credentials ---------------------------------------------------------------------------------------


def _subject_matches(rule: FederatedCredential, subject: str) -> bool:
    if rule.subject_is_pattern:
        return fnmatch.fnmatchcase(subject, rule.subject)
    return subject == rule.subject


def _federated(client_id: str, assertion: str, header: dict, claims: dict, now: datetime) -> Verified:
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _Refused("the token has no issuer")
    rules = FederatedCredential.objects.filter(issuer=issuer, revoked_at__isnull=True)
    if client_id:
        rules = rules.filter(Q(agent__identity__client_id=client_id)
                             | Q(blueprint__agents__identity__client_id=client_id))
    else:
        rules = rules.filter(agent__isnull=False)
    rules = list(rules.exclude(agent__status=AgentStatus.RETIRED))
    if not rules:
        raise _Refused(f"no federated credential trusts the issuer {issuer[:120]}")
    key = _key_for(issuer, header.get("kid"), issuer=True)
    _decode(assertion, key, header["alg"], now, None)
    _check_expiry(claims, now, max_ahead=None)
    audiences = claims.get("aud")
    audiences = [audiences] if isinstance(audiences, str) else audiences if isinstance(audiences, list) else []
    by_audience = [r for r in rules if r.audience in audiences]
    if not by_audience:
        raise _Refused("wrong audience: no trusted rule names the token's audience")
    subject = claims.get("sub")
    if not isinstance(subject, str):
        raise _Refused("the token has no subject")
    matching = [r for r in by_audience if _subject_matches(r, subject)]
    if not matching:
        raise _Refused(f"subject not trusted: {subject[:120]}")
    agent_ids = {r.agent_id for r in matching if r.agent_id is not None}
    if client_id:
        found = _identity_of_client(client_id)
    else:
        if len(agent_ids) != 1:
            raise _Refused("the token matches the rules of several agents; name the client id")
        found = _identity_of_agent(agent_ids.pop())
    if found is None:
        raise _Refused("the agent has no client registration")
    _not_seen_before(issuer, claims, assertion, now)
    identity_id, agent_id, found_client_id = found
    return Verified(client_id=found_client_id, agent_id=agent_id, identity_id=identity_id,
                    credential_type=CredentialType.FEDERATED, issuer=issuer)


def _identity_of_client(client_id: str):
    from agents.models import AgentIdentity

    return AgentIdentity.objects.filter(client_id=client_id).values_list("pk", "agent_id", "client_id").first()


def _identity_of_agent(agent_id: int):
    from agents.models import AgentIdentity

    return AgentIdentity.objects.filter(agent_id=agent_id).values_list("pk", "agent_id", "client_id").first()


# --- entry points ---------------------------------------------------------------------------------------------


def verify_client_assertion(client_id: str, assertion: str, now: datetime) -> Verified:
    """Client authentication by assertion (RFC 7521 §4.2): the agent's own signed JWT (``iss`` is its client id)
    or its platform's token (any other issuer). Refusals are ``invalid_client``."""
    return _verify(client_id, assertion, now, INVALID_CLIENT)


def verify_grant_assertion(client_id: str, assertion: str, now: datetime) -> Verified:
    """The jwt-bearer grant (RFC 7523 §2.1) with a federated credential's token; ``client_id`` may be empty, then
    the one agent whose rules the token matches is the client. Refusals are ``invalid_grant``."""
    return _verify(client_id, assertion, now, INVALID_GRANT, federated_only=True)


def _verify(client_id: str, assertion: str, now: datetime, error: str, *, federated_only: bool = False) -> Verified:
    issuer, own = "", False
    try:
        header, claims = _unverified(assertion)
        issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        if not client_id and not federated_only and issuer and issuer == claims.get("sub"):
            client_id = issuer[:64]  # RFC 7521 §4.2: client_id may be left out; the assertion names the client
        # The agent's own assertion names its client id (RFC 7523 §3: iss and sub); a platform's token does not.
        own = bool(client_id) and client_id in (issuer, claims.get("sub")) and not federated_only
        if own:
            return _private_key_jwt(client_id, assertion, header, claims, now)
        return _federated(client_id, assertion, header, claims, now)
    except _Refused as refused:
        kind = CredentialType.KEY if own else CredentialType.FEDERATED
        return Verified(client_id=client_id, credential_type=kind,
                        issuer=issuer[:255] if kind == CredentialType.FEDERATED else "", error=error,
                        reason=refused.reason)
