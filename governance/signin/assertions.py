"""Verifying client assertions: agents that authenticate without a stored secret (R28; docs/oauth.md, "Agents
without secrets").

Two kinds of JWT reach the token endpoint as an assertion:

* ``private_key_jwt`` (RFC 7523 §2.2): the agent signed it with a key registered as one of its key credentials.
  ``iss`` = ``sub`` = its client id, ``aud`` names our issuer or token endpoint, ``exp`` at most
  ``CLIENT_ASSERTION_MAX_SECONDS`` ahead of now and of its ``iat``, ``iat``/``nbf`` not in the future, a ``jti``
  never seen before.
* a federated credential's token (workload identity federation): its platform (a Kubernetes cluster, a CI system,
  a cloud) signed it. A rule trusting its ``iss`` must exist (the agent's own or its blueprint's default); the
  issuer's keys come from its OpenID configuration's ``jwks_uri``; ``aud`` must hold the rule's audience and
  ``sub`` match its subject (exactly, or the pattern an administrator allowed). A token is accepted once.

Replay store: the shared cache (Redis, ``SET NX`` with an expiry just past the assertion's ``exp``). The token
endpoint's gate writes the entry in the same Redis command as its rate-limit counters (``replay_entry``; one round
trip per request) and hands the answer to the verifier, which refuses a second use once the assertion has verified,
and deletes the entry again when it refuses the assertion for any other reason (``release``). Without the gate's
answer the verifier writes the entry itself (``cache.add``). When Redis does not answer, ``portal.cache`` serves this
process's memory instead; a replay across two processes is then not seen for as long as Redis is down (the assertion
still expires within minutes).

Issuer keys: the discovery document and JWKS are fetched over https (http only on loopback when
``OAUTH_ALLOW_LOOPBACK_HTTP``), at most 64 KiB each, 5 s timeout, no redirects, and kept in the shared cache for
``FEDERATION_JWKS_CACHE_SECONDS``; this process keeps the parsed keys until the shared copy expires (for at most
``MAX_KEPT_SOURCES`` issuers and URLs, thread-safe), so a token costs no cache read. A ``kid`` that is not among the
keys forces one refetch, at most once every ``REFETCH_SECONDS`` per issuer, so that an issuer's rotated keys are
picked up without letting anyone make the portal fetch on every request.

Nothing here writes to the database or knows HTTP requests; the result is a plain ``Verified`` value.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

import httpx
import jwt
from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from agents import trust
from agents.choices import AgentStatus, CredentialType
from agents.models import Agent, AgentIdentity, FederatedCredential, KeyCredential
from governance.signin import fastpath, tokens

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30
MAX_FETCH_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 5.0
REFETCH_SECONDS = 5
MAX_REPLAY_SECONDS = 400 * 86400
MAX_KEPT_SOURCES = 256  # issuers and jwks_uris whose keys one process keeps
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
    # The client as ``tokens.authenticate_identity`` gives it, when its row was read with the rules (PostgreSQL:
    # one statement for both) and built once to check its agent; issuance then reads and builds it no more.
    client: tokens.AgentClient | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return not self.error


class _Refused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason[:300]


def token_endpoint() -> str:
    return settings.PORTAL_BASE_URL + "/oauth/token/"


_ALGORITHM_OBJECTS = jwt.algorithms.get_default_algorithms()


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class _JWS:
    """A compact JWS read once: its header and claims (not trusted until ``verify``), and what its signature
    covers. Reading it once and verifying with the algorithm object keeps the token endpoint's cost low."""

    def __init__(self, token: str):
        self.token = token
        try:
            header_part, claims_part, signature_part = token.split(".")
            self.header = json.loads(_b64(header_part))
            self.claims = json.loads(_b64(claims_part))
            self.signature = _b64(signature_part)
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise _Refused("the assertion is not a JWT") from exc
        if not isinstance(self.header, dict) or not isinstance(self.claims, dict):
            raise _Refused("the assertion is not a JWT")
        self.alg = self.header.get("alg")
        if self.alg not in ALGORITHMS:
            raise _Refused("the assertion's algorithm is not accepted")
        self.signed = f"{header_part}.{claims_part}".encode()

    def verify(self, key) -> None:
        algorithm = _ALGORITHM_OBJECTS[self.alg]
        try:
            valid = algorithm.verify(self.signed, key.key if isinstance(key, jwt.PyJWK) else key, self.signature)
        except Exception:  # noqa: BLE001 - a key of another type, a malformed signature: it does not verify
            valid = False
        if not valid:
            raise _Refused("the signature does not verify")


class Replay(NamedTuple):
    """An assertion's entry in the replay store: its cache key (``cache.make_key`` gives the Redis key), how long it
    is kept, and, once the token endpoint's gate has written it (``SET NX`` in the gate's one Redis command),
    whether this request was the first to present it (None: not written yet; the verifier then writes it itself).
    ``jws``: the assertion as read for the entry, which the verifier then reads no more."""

    key: str
    ttl: int
    first: bool | None = None
    jws: _JWS | None = None


def _replay_key(issuer: str, claims: dict, assertion: str) -> str:
    jti = claims.get("jti")
    marker = jti if isinstance(jti, str) and jti else "sha256:" + hashlib.sha256(assertion.encode()).hexdigest()
    return "assertion-seen:" + hashlib.sha256(f"{issuer}\n{marker}".encode()).hexdigest()


def _replay_ttl(exp: float, now: float) -> int:
    """Until just after the assertion expires (at most ``MAX_REPLAY_SECONDS``: an expiry far ahead stays a number
    Redis takes)."""
    return min(MAX_REPLAY_SECONDS, max(1, int(exp - now) + LEEWAY_SECONDS))


def replay_entry(assertion: str, now: float) -> Replay | None:
    """The replay-store entry of an assertion as sent (read, not verified: the gate writes it before the signature
    is checked, and the verifier releases it when the assertion is refused for any other reason, so a forged
    token cannot use up a real one's ``jti``). None when it is no JWS of an accepted algorithm or has no readable
    ``iss`` and ``exp`` (it is refused before the replay store is asked). The assertion is read once: the entry
    carries it to the verifier."""
    try:
        jws = _JWS(assertion)
    except _Refused:
        return None
    claims = jws.claims
    issuer, exp = claims.get("iss"), claims.get("exp")
    if not isinstance(issuer, str) or not issuer or isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return Replay(_replay_key(issuer, claims, assertion), _replay_ttl(exp, now), jws=jws)


def release(replay: Replay | None) -> None:
    """Forget an entry the gate wrote for an assertion that was then not accepted (refused, over a rate limit,
    locked out): presenting it again is not a replay."""
    if replay is not None and replay.first:
        cache.delete(replay.key)


def _not_seen_before(issuer: str, claims: dict, assertion: str, now: datetime, replay: Replay | None) -> None:
    """Remember the assertion until just after it expires; a second use is refused. The gate has usually written the
    entry already (``replay``: one Redis command per request); otherwise ``cache.add`` (SET NX) writes it here.
    An entry made from this very reading of the assertion has its key already (``issuer`` is the assertion's
    ``iss`` on both paths: the federated one reads it there, private_key_jwt has checked it is the client id)."""
    if replay is not None and replay.first is not None and replay.jws is not None and replay.jws.claims is claims \
            and claims.get("iss") == issuer:
        key = replay.key
    else:
        key = _replay_key(issuer, claims, assertion)
    if replay is not None and replay.first is not None and replay.key == key:
        if not replay.first:
            raise _Refused("assertion replayed (its jti was already used)")
        return
    if not cache.add(key, 1, timeout=_replay_ttl(claims["exp"], now.timestamp())):
        raise _Refused("assertion replayed (its jti was already used)")


def _check_expiry(claims: dict, now: datetime, *, max_ahead: int | None) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, int | float):
        raise _Refused("the assertion has no exp")
    if exp + LEEWAY_SECONDS <= now.timestamp():
        raise _Refused("the assertion has expired")
    if max_ahead is not None:
        issued = claims.get("iat")
        if exp - now.timestamp() > max_ahead + LEEWAY_SECONDS:
            raise _Refused(f"the assertion expires more than {max_ahead} seconds ahead")
        if isinstance(issued, int | float) and exp - issued > max_ahead + LEEWAY_SECONDS:
            raise _Refused(f"the assertion lives longer than {max_ahead} seconds (exp - iat)")
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if isinstance(value, int | float) and value - LEEWAY_SECONDS > now.timestamp():
            raise _Refused(f"the assertion is not valid yet ({name} in the future)")


# --- fetching keys ----------------------------------------------------------------------------------------------


# This process's copy of fetched keys: source → (wall-clock expiry, {kid: PyJWK}), the verified key objects, expiring
# when the shared cache's copy does, at most MAX_KEPT_SOURCES of them (the oldest written goes first).
_memo: OrderedDict[str, tuple[float, dict]] = OrderedDict()
_memo_lock = threading.Lock()


def _keep(source: str, expires: float, keys: dict) -> dict:
    with _memo_lock:
        _memo.pop(source, None)
        _memo[source] = (expires, keys)
        while len(_memo) > MAX_KEPT_SOURCES:
            _memo.popitem(last=False)
    return keys


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
        if held is not None and held[0] > time.time():
            return held[1]
        shared = cache.get(key)  # {"expires": wall-clock expiry, "jwks": the document}
        if isinstance(shared, dict) and isinstance(shared.get("expires"), float) and shared["expires"] > time.time():
            return _keep(source, shared["expires"], _parse_keys(shared.get("jwks") or {}))
    document = _get(_jwks_uri_of(source) if issuer else source)
    expires = time.time() + ttl
    cache.set(key, {"expires": expires, "jwks": document}, timeout=ttl)
    return _keep(source, expires, _parse_keys(document))


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


def _private_key_jwt(client_id: str, jws: _JWS, now: datetime, replay: Replay | None) -> Verified:
    claims = jws.claims
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _Refused("iss and sub of the assertion must both be the client id")
    keys = list(KeyCredential.objects.filter(identity__client_id=client_id, revoked_at__isnull=True,
                                             expires_at__gt=now).select_related("identity"))
    if not keys:
        raise _Refused("no active key credential")
    kid = jws.header.get("kid")
    chosen = [k for k in keys if k.kid == kid] or keys
    for credential in chosen:
        try:
            if credential.jwks_uri:
                jws.verify(_key_for(credential.jwks_uri, kid, issuer=False))
            else:
                jws.verify(jwt.PyJWK.from_dict(credential.public_jwk))
        except _Refused:
            continue
        audience = claims.get("aud")
        audience = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else None
        if audience is None:
            raise _Refused("the assertion has no aud")
        if not {settings.PORTAL_BASE_URL, token_endpoint()} & {a for a in audience if isinstance(a, str)}:
            raise _Refused("wrong audience: neither the issuer nor the token endpoint")
        _check_expiry(claims, now, max_ahead=settings.CLIENT_ASSERTION_MAX_SECONDS)
        if not isinstance(claims.get("jti"), str) or not claims["jti"]:
            raise _Refused("the assertion has no jti")
        _not_seen_before(client_id, claims, jws.token, now, replay)
        return Verified(client_id=client_id, identity_id=credential.identity_id,
                        agent_id=credential.identity.agent_id, credential_type=CredentialType.KEY)
    raise _Refused("the signature does not verify with any active key of the client")


# --- federated credentials ---------------------------------------------------------------------------------------


def _subject_matches(rule: FederatedCredential, subject: str) -> bool:
    if rule.subject_is_pattern:
        return fnmatch.fnmatchcase(subject, rule.subject)
    return subject == rule.subject


class _Rule(NamedTuple):
    """A trust rule in force for the client, with the client it authenticates."""

    subject: str
    subject_is_pattern: bool
    audience: str
    agent_id: int | None  # None: a blueprint default
    identity_id: int
    identity_agent_id: int
    client_id: str


_RULES_FOR_ISSUER = None


def _rules(issuer: str, client_id: str, now: datetime) -> tuple[list[_Rule], tokens.AgentClient | None]:
    """The active rules trusting ``issuer``: for ``client_id``, its agent's and its blueprint's defaults; without
    one (the jwt-bearer grant), every agent's own rules. Retired agents have none. On PostgreSQL (the hot path,
    docs/design.md "The token endpoint") one prepared statement, which for a named client also reads the client's
    row for issuance (the client built from it is returned second; None elsewhere); the ORM elsewhere."""
    global _RULES_FOR_ISSUER
    if fastpath.enabled():
        t = fastpath._t
        columns = "r.subject, r.subject_is_pattern, r.audience, r.agent_id, i.id, i.agent_id, i.client_id"
        if client_id:
            row = fastpath.authenticate_identity_with_rules(client_id, issuer, now)
            if row is None:
                return [], None
            client = tokens.client_from_row(row[1:])
            if client.agent.status == AgentStatus.RETIRED or not row[0]:
                return [], None
            return [_Rule(*rule, client.credential_id, client.agent.pk, client.client_id) for rule in row[0]], client
        if _RULES_FOR_ISSUER is None:
            _RULES_FOR_ISSUER = (
                f"SELECT {columns} FROM {t(FederatedCredential)} r JOIN {t(Agent)} a ON a.id = r.agent_id "
                f"JOIN {t(AgentIdentity)} i ON i.agent_id = a.id "
                f"WHERE r.issuer = %s AND r.revoked_at IS NULL AND a.status <> %s")
        rows = fastpath.run(_RULES_FOR_ISSUER, (issuer, AgentStatus.RETIRED.value), read_only=True)
        return [_Rule(*row) for row in rows], None
    if client_id:
        identity = AgentIdentity.objects.filter(client_id=client_id).exclude(agent__status=AgentStatus.RETIRED) \
            .values_list("pk", "agent_id", "client_id", "agent__blueprint_id").first()
        if identity is None:
            return [], None
        rows = FederatedCredential.objects.filter(
            Q(agent_id=identity[1]) | Q(blueprint_id=identity[3]), issuer=issuer, revoked_at__isnull=True) \
            .values_list("subject", "subject_is_pattern", "audience", "agent_id")
        return [_Rule(*row, *identity[:3]) for row in rows], None
    rows = FederatedCredential.objects.filter(issuer=issuer, revoked_at__isnull=True, agent__identity__isnull=False) \
        .exclude(agent__status=AgentStatus.RETIRED) \
        .values_list("subject", "subject_is_pattern", "audience", "agent_id", "agent__identity__id", "agent_id",
                     "agent__identity__client_id")
    return [_Rule(*row) for row in rows], None


def _federated(client_id: str, jws: _JWS, now: datetime, replay: Replay | None) -> Verified:
    claims = jws.claims
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _Refused("the token has no issuer")
    rules, client = _rules(issuer, client_id, now)
    if not rules:
        raise _Refused(f"no federated credential trusts the issuer {issuer[:120]}")
    jws.verify(_key_for(issuer, jws.header.get("kid"), issuer=True))
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
    if len({r.identity_id for r in matching}) != 1:
        raise _Refused("the token matches the rules of several agents; name the client id")
    _not_seen_before(issuer, claims, jws.token, now, replay)
    rule = matching[0]
    return Verified(client_id=rule.client_id, agent_id=rule.identity_agent_id, identity_id=rule.identity_id,
                    credential_type=CredentialType.FEDERATED, issuer=issuer, client=client)


# --- entry points ---------------------------------------------------------------------------------------------


def verify_client_assertion(client_id: str, assertion: str, now: datetime, *,
                            replay: Replay | None = None) -> Verified:
    """Client authentication by assertion (RFC 7521 §4.2): the agent's own signed JWT (``iss`` is its client id)
    or its platform's token (any other issuer). Refusals are ``invalid_client``. ``replay``: the replay-store entry
    the gate wrote for this assertion, if it did."""
    return _verify(client_id, assertion, now, INVALID_CLIENT, replay=replay)


def verify_grant_assertion(client_id: str, assertion: str, now: datetime, *,
                           replay: Replay | None = None) -> Verified:
    """The jwt-bearer grant (RFC 7523 §2.1) with a federated credential's token; ``client_id`` may be empty, then
    the one agent whose rules the token matches is the client. Refusals are ``invalid_grant``."""
    return _verify(client_id, assertion, now, INVALID_GRANT, federated_only=True, replay=replay)


def _verify(client_id: str, assertion: str, now: datetime, error: str, *, federated_only: bool = False,
            replay: Replay | None = None) -> Verified:
    issuer, own = "", False
    try:
        jws = replay.jws if replay is not None and replay.jws is not None and replay.jws.token == assertion \
            else _JWS(assertion)
        claims = jws.claims
        issuer = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        if not client_id and not federated_only and issuer and issuer == claims.get("sub"):
            client_id = issuer[:64]  # RFC 7521 §4.2: client_id may be left out; the assertion names the client
        # The agent's own assertion names its client id (RFC 7523 §3: iss and sub); a platform's token does not.
        own = bool(client_id) and client_id in (issuer, claims.get("sub")) and not federated_only
        if own:
            return _private_key_jwt(client_id, jws, now, replay)
        return _federated(client_id, jws, now, replay)
    except _Refused as refused:
        if replay is not None and replay.first:
            release(replay)  # refused before (or instead of) being accepted: it used nothing up
        kind = CredentialType.KEY if own else CredentialType.FEDERATED
        return Verified(client_id=client_id, credential_type=kind,
                        issuer=issuer[:255] if kind == CredentialType.FEDERATED else "", error=error,
                        reason=refused.reason)
