"""The OAuth 2.0 endpoints for agents (R22, R13, R20): ``/oauth/token/``, ``/oauth/introspect/``, ``/oauth/revoke/``.

Built on django-oauth-toolkit's protocol layer (its ``OAuthLibCore`` and ``OAuth2Validator``, on oauthlib): the
validator here authenticates against the agents' own credentials (HMAC-hashed, ``agents.credentials``) and decides
the scopes with ``governance.tokens`` and conditional access, instead of DOT's application and token tables (DOT's
client secrets are PBKDF2-hashed, which costs a third of a second per request; its tokens are stored readable).

Every token request leaves one row in the sign-in log (``SignIn``) with what was asked, what was granted, the
outcome and the policies that applied; the row and the token are written in one transaction. Failed client
authentication is counted per client id: past ``OAUTH_FAILED_AUTH_RISK`` a risk detection is raised, past
``OAUTH_FAILED_AUTH_LOCK`` the client id is locked out for ``OAUTH_LOCK_SECONDS`` (R21). Requests are
rate-limited per client id and per IP. No secret or token value is logged, audited or echoed.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST
from oauth2_provider.oauth2_backends import OAuthLibCore
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.oauth2 import BearerToken, RevocationEndpoint, TokenEndpoint
from oauthlib.oauth2.rfc6749 import errors
from oauthlib.oauth2.rfc6749.grant_types import ClientCredentialsGrant
from oauthlib.oauth2.rfc6749.grant_types.base import GrantTypeBase

from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import RiskLevel
from governance.signin import fastpath, risk, tokens
from governance.signin.choices import ActorKind, DetectionKind, GrantType, SignInOutcome
from governance.signin.models import AccessToken, SignIn

TOKEN_EXCHANGE = GrantType.TOKEN_EXCHANGE.value
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


# --- one attempt, shared by the view and the validator --------------------------------------------------------
@dataclass
class Attempt:
    """What the sign-in log records about one token request."""

    ip: str | None
    at: datetime
    grant_type: str = ""
    client_id: str = ""
    client: tokens.AgentClient | None = None
    subject: object = None
    actor_kind: str = ActorKind.UNKNOWN
    requested: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    error: str = ""
    reason: str = ""
    policies: list[dict] = field(default_factory=list)
    pending_token: dict | None = None
    token_id: int | None = None
    failed_authentication: bool = False
    peeked_client_id: str | None = None
    locked: bool = False


_attempt: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("oauth_attempt", default=None)


def _current() -> Attempt:
    return _attempt.get() or Attempt(ip=None, at=timezone.now())


# --- rate limits and lock-out ----------------------------------------------------------------------------------
def _redis():
    """The raw Redis client behind Django's cache, or None (local memory cache)."""
    backend = getattr(cache, "_cache", None)
    if not hasattr(backend, "get_client"):
        return None
    if "_aip_client" not in backend.__dict__:  # a Redis client per cache backend (thread), not per call
        backend._aip_client = backend.get_client(write=True)
    return backend._aip_client


def _count(key: str, window: int) -> int:
    """Fixed-window counter in the cache (Redis in production: shared by every worker)."""
    return _gate([key], window, lock_of="")[0][0]


def _gate(keys: list[str], window: int, lock_of: str) -> tuple[list[int], bool]:
    """Increment fixed-window counters and read a client's lock-out, in one Redis round trip."""
    bucket = int(time.time() // window)
    names = [cache.make_key(f"aip:{key}:{bucket}") for key in keys]
    client = _redis()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.incr(name)
            pipe.expire(name, window + 5)
        if lock_of:
            pipe.exists(cache.make_key(_lock_key(lock_of)))
        results = pipe.execute()
        return [int(results[2 * i]) for i in range(len(names))], bool(lock_of and results[-1])
    counts = []
    for key in keys:
        name = f"aip:{key}:{bucket}"
        cache.add(name, 0, window + 5)
        try:
            counts.append(cache.incr(name))
        except ValueError:  # evicted between add and incr
            cache.set(name, 1, window + 5)
            counts.append(1)
    return counts, is_locked(lock_of)


def request_gate(ip: str | None, client_id: str, *, introspection: bool = False) -> tuple[bool, bool]:
    """(over a rate limit, client id locked out) for one OAuth request: one round trip to the cache.

    Agents' requests (token, revoke) and resource servers' introspections count in separate buckets with their own
    limits: a resource server checks a token on every call it serves."""
    if introspection:
        per_ip = per_client = settings.OAUTH_INTROSPECT_RATE_LIMIT
    else:
        per_ip, per_client = settings.OAUTH_RATE_LIMIT_PER_IP, settings.OAUTH_RATE_LIMIT_PER_CLIENT
    kind = "rs" if introspection else "rl"
    keys, limits = [], []
    if ip and per_ip > 0:
        keys.append(f"{kind}:ip:{ip}")
        limits.append(per_ip)
    if client_id and per_client > 0:
        keys.append(f"{kind}:client:{client_id}")
        limits.append(per_client)
    if not keys and not client_id:
        return False, False
    counts, locked = _gate(keys, 60, lock_of=client_id)
    return any(c > limit for c, limit in zip(counts, limits, strict=True)), locked


def _lock_key(client_id: str) -> str:
    return f"aip:lock:{client_id}"


def is_locked(client_id: str) -> bool:
    return bool(client_id) and cache.get(_lock_key(client_id)) is not None


def _lock(client_id: str) -> None:
    client = _redis()
    if client is not None:
        client.set(cache.make_key(_lock_key(client_id)), 1, ex=settings.OAUTH_LOCK_SECONDS)
    else:
        cache.set(_lock_key(client_id), 1, settings.OAUTH_LOCK_SECONDS)


def _failed_authentication(client_id: str) -> None:
    """Count a failed client authentication; raise risk, then lock the client id out (R21)."""
    agent = tokens.agent_for_client_id(client_id)
    if agent is None:
        return
    failures = _count(f"fail:{client_id}", 900)
    if failures >= settings.OAUTH_FAILED_AUTH_LOCK:
        _lock(client_id)
        risk.record_detection(agent=agent, kind=DetectionKind.FAILED_CREDENTIALS, level=RiskLevel.HIGH,
                              key=f"locked:{int(time.time() // 900)}",
                              detail=f"{failures} failed client authentications in 15 minutes; client locked out")
    elif failures >= settings.OAUTH_FAILED_AUTH_RISK:
        risk.record_detection(agent=agent, kind=DetectionKind.FAILED_CREDENTIALS, level=RiskLevel.MEDIUM,
                              key=f"failures:{int(time.time() // 900)}",
                              detail=f"{failures} failed client authentications in 15 minutes")


# --- the validator -------------------------------------------------------------------------------------------
class AgentValidator(OAuth2Validator):
    """Authenticates agents by their own credentials and decides scopes (see the module docstring)."""

    def client_authentication_required(self, request, *args, **kwargs) -> bool:
        return True

    def _client_credentials(self, request) -> tuple[str, str]:
        basic = self._extract_basic_auth(request)
        if basic:
            return decode_basic(basic)
        return (request.client_id or ""), (getattr(request, "client_secret", None) or "")

    @sensitive_variables("secret")
    def authenticate_client(self, request, *args, **kwargs) -> bool:
        attempt = _current()
        client_id, secret = self._client_credentials(request)
        attempt.client_id = client_id[:64]
        locked = attempt.locked if attempt.peeked_client_id == client_id[:64] else is_locked(client_id)
        if locked:
            attempt.error, attempt.reason = "invalid_client", "client locked after repeated failed authentication"
            return False
        client = tokens.authenticate_client(client_id, secret, attempt.at)
        if client is None:
            attempt.error, attempt.reason = "invalid_client", "unknown client or wrong, expired or revoked secret"
            attempt.failed_authentication = True
            return False
        request.client, request.client_id = client, client.client_id
        attempt.client, attempt.actor_kind = client, client.actor_kind
        if client.actor_kind == ActorKind.USER_ACCOUNT:
            attempt.subject = client.agent.run_as_user
        return True

    def authenticate_client_id(self, client_id, request, *args, **kwargs) -> bool:
        return False  # no public clients

    def validate_grant_type(self, client_id, grant_type, client, request, *args, **kwargs) -> bool:
        attempt = _current()
        if grant_type not in (GrantType.CLIENT_CREDENTIALS, TOKEN_EXCHANGE):
            attempt.error, attempt.reason = "unauthorized_client", f"grant type {grant_type} is not allowed"
            return False
        why = tokens.refusal(client.agent, attempt.at)
        if why:
            attempt.error, attempt.reason = "unauthorized_client", why
            raise errors.UnauthorizedClientError(description=f"No token: {why}.", request=request)
        return True

    # scopes: computed once per request and kept on the oauthlib request
    def _allowed(self, request) -> tokens.Entitlement:
        if getattr(request, "entitlement", None) is None:
            client, now = request.client, _current().at
            held = tokens.effective_scopes(client.agent, now)
            if client.agent.identity_type == "user_account":  # R1/R13: never more than the user's own rights
                held = held.narrowed(tokens.user_rights(client.agent.run_as_user))
            request.entitlement = held
        return request.entitlement

    def get_default_scopes(self, client_id, request, *args, **kwargs) -> list[str]:
        return sorted(self._allowed(request).scopes)

    def validate_scopes(self, client_id, scopes, client, request, *args, **kwargs) -> bool:
        attempt = _current()
        requested = [s for s in scopes if s]
        attempt.requested = sorted(requested) if request.scope else []
        missing = sorted(set(requested) - self._allowed(request).scopes)
        if missing:
            attempt.error, attempt.reason = "invalid_scope", "not held: " + ", ".join(missing)[:280]
            raise errors.InvalidScopeError(description=f"The agent does not hold {', '.join(missing)}.",
                                           request=request)
        check_conditional_access(client.agent, attempt, requested)
        attempt.granted = sorted(requested)
        request.valid_until = self._allowed(request).valid_until(requested)
        return True

    def save_bearer_token(self, token, request, *args, **kwargs) -> None:
        """Only noted here: the view writes the token with its sign-in row (one statement on PostgreSQL)."""
        attempt = _current()
        parent = getattr(request, "exchanged_from", None)
        attempt.pending_token = {
            "token_hash": tokens.hash_token(token["access_token"]), "agent_id": request.client.agent.pk,
            "client_id": request.client.client_id, "subject_id": attempt.subject.pk if attempt.subject else None,
            "actor_kind": attempt.actor_kind, "grant_type": request.grant_type, "scopes": sorted(attempt.granted),
            "parent_id": parent.pk if parent else None, "issued_at": attempt.at,
            "expires_at": request.token_expires_at, "revoked_reason": ""}

    def revoke_token(self, token, token_type_hint, request, *args, **kwargs) -> None:
        tokens.token_revoke(client=request.client, value=token or "")

    def validate_bearer_token(self, token, scopes, request) -> bool:
        return False  # the portal API authenticates bearer tokens itself (governance.api_auth)


def check_conditional_access(agent, attempt: Attempt, scopes) -> None:
    """R20 at issuance: evaluate every active policy; block wins; report-only is recorded, never enforced."""
    policies = conditional_access.cached_active_policies()
    facts = conditional_access.agent_facts(agent, policies)
    context = conditional_access.AccessContext(ip=attempt.ip, at=attempt.at, scopes=frozenset(scopes))
    evaluation = conditional_access.evaluate(facts, context, policies)
    attempt.policies = evaluation.applied()
    if not evaluation.allowed:
        names = evaluation.blocked_by
        attempt.error, attempt.reason = "invalid_grant", f"blocked by conditional access: {names}"[:300]
        raise errors.InvalidGrantError(description=f"Blocked by conditional access policy: {names}.")


# --- token exchange (RFC 8693) ---------------------------------------------------------------------------------
class TokenExchangeGrant(GrantTypeBase):
    """An agent presents a person's access token and gets one for that person with ``act`` naming the agent:
    scopes = requested ∩ the agent's delegated permissions ∩ the person's rights (∩ the subject token's scopes)."""

    def create_token_response(self, request, token_handler):
        headers = self._get_default_headers()
        try:
            self.validate_token_request(request)
        except errors.OAuth2Error as e:
            headers.update(e.headers)
            return headers, e.json, e.status_code
        token = token_handler.create_token(request, refresh_token=False)
        token["issued_token_type"] = ACCESS_TOKEN_TYPE
        self.request_validator.save_token(token, request)
        return headers, json.dumps(token), 200

    def validate_token_request(self, request):
        attempt = _current()
        attempt.actor_kind = ActorKind.ON_BEHALF_OF
        for param in ("grant_type", "scope", "subject_token"):
            if param in request.duplicate_params:
                raise errors.InvalidRequestError(description=f"Duplicate {param} parameter.", request=request)
        self.validate_client_confidential(request)
        attempt.actor_kind = ActorKind.ON_BEHALF_OF
        attempt.subject = None
        self.validate_grant_type(request)
        subject_value = request._params.get("subject_token") or ""
        if not subject_value or request._params.get("subject_token_type") != ACCESS_TOKEN_TYPE:
            attempt.error, attempt.reason = "invalid_request", "subject_token and its access_token type are required"
            raise errors.InvalidRequestError(description="subject_token of type access_token is required.",
                                             request=request)
        subject_token = tokens.live_token(subject_value, attempt.at)
        if subject_token is None or subject_token.actor_kind != ActorKind.USER or subject_token.subject is None:
            attempt.error, attempt.reason = "invalid_grant", "subject token is not an active person's token"
            raise errors.InvalidGrantError(description="The subject token is not an active user's access token.",
                                           request=request)
        user = subject_token.subject
        attempt.subject = user
        agent = request.client.agent
        held = tokens.effective_scopes(agent, attempt.at)
        allowed = (tokens.delegated_names(held.scopes) & tokens.user_rights(user) & set(subject_token.scopes))
        requested = set(request.scopes or []) or set(allowed)
        attempt.requested = sorted(request.scopes or [])
        granted = requested & allowed
        if not granted:
            attempt.error, attempt.reason = "invalid_scope", "nothing requested is both delegated and the user's"
            raise errors.InvalidScopeError(request=request)
        check_conditional_access(agent, attempt, granted)
        request.scopes = sorted(granted)
        attempt.granted = sorted(granted)
        request.exchanged_from = subject_token
        ends = [e for e in (held.valid_until(granted), subject_token.expires_at) if e]
        request.valid_until = min(ends) if ends else None


# --- the server ------------------------------------------------------------------------------------------------
def _expires_in(request) -> int:
    """Seconds the token lives: ``ACCESS_TOKEN_TTL``, cut to the earliest end of what granted its scopes."""
    now = _current().at
    request.token_expires_at = tokens.token_expiry(now, getattr(request, "valid_until", None))
    return max(1, int((request.token_expires_at - now).total_seconds()))


def _generate(request) -> str:
    return tokens.new_token()


class AgentServer(TokenEndpoint, RevocationEndpoint):
    """Client credentials and token exchange at the token endpoint, plus revocation (RFC 7009)."""

    def __init__(self, request_validator, token_expires_in=None, token_generator=None, **kwargs):
        bearer = BearerToken(request_validator, _generate, _expires_in)
        grants = {"client_credentials": ClientCredentialsGrant(request_validator),
                  TOKEN_EXCHANGE: TokenExchangeGrant(request_validator)}
        TokenEndpoint.__init__(self, default_grant_type="client_credentials", default_token_type=bearer,
                               grant_types=grants)
        RevocationEndpoint.__init__(self, request_validator, supported_token_types=["access_token"])


_core: OAuthLibCore | None = None


def core() -> OAuthLibCore:
    global _core
    if _core is None:
        _core = OAuthLibCore(AgentServer(AgentValidator()))
    return _core


# --- views ---------------------------------------------------------------------------------------------------
def client_ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR") or None


@sensitive_variables("decoded")
def decode_basic(payload: str) -> tuple[str, str]:
    """(client id, secret) from the base64 part of an HTTP Basic header (RFC 6749 §2.3.1: each form-encoded);
    ("", "") when it is malformed."""
    try:
        decoded = base64.b64decode(payload).decode("utf-8")
        client_id, secret = decoded.split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "", ""
    return unquote_plus(client_id), unquote_plus(secret)


def request_credentials(request: HttpRequest) -> tuple[str, str]:
    """(client id, secret) from HTTP Basic, else from the form body."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.startswith("Basic "):
        return decode_basic(header[6:])
    return request.POST.get("client_id", ""), request.POST.get("client_secret", "")


def _peek_client_id(request: HttpRequest) -> str:
    return request_credentials(request)[0][:64]


def _protocol_response(body: str, status: int, headers: dict) -> HttpResponse:
    """Django's response for what oauthlib answered (its headers kept, the JSON content type ours)."""
    response = HttpResponse(body or "", status=status, content_type="application/json")
    for key, value in headers.items():
        if key.lower() != "content-type":
            response[key] = value
    return response


def _too_many(request: HttpRequest, client_id: str, attempt: Attempt | None = None, *,
              introspection: bool = False) -> HttpResponse | None:
    """429 past a rate limit; also notes on the attempt whether this client id is locked out (same round trip)."""
    limited, locked = request_gate(client_ip(request), client_id, introspection=introspection)
    if attempt is not None:
        attempt.peeked_client_id, attempt.locked = client_id, locked
    if limited:
        response = JsonResponse({"error": "slow_down", "error_description": "Too many requests; retry later."},
                                status=429)
        response["Retry-After"] = "60"
        return response
    return None


def _record(attempt: Attempt, outcome: str) -> None:
    """Write the sign-in row, and the issued token with it, atomically."""
    client = attempt.client
    agent = client.agent if client else tokens.agent_for_client_id(attempt.client_id)
    actor_kind = attempt.actor_kind
    if agent is None:
        actor_kind = ActorKind.UNKNOWN
    elif actor_kind == ActorKind.UNKNOWN:  # a known client id that failed to authenticate
        actor_kind = ActorKind.USER_ACCOUNT if agent.identity_type == "user_account" else ActorKind.AGENT
    sign_in = {"at": attempt.at, "agent_id": agent.pk if agent else None, "client_id": attempt.client_id,
               "actor_kind": actor_kind, "subject_id": attempt.subject.pk if attempt.subject else None,
               "ip": attempt.ip, "grant_type": attempt.grant_type[:60], "requested_scopes": attempt.requested,
               "granted_scopes": attempt.granted if outcome == SignInOutcome.SUCCESS else [], "outcome": outcome,
               "error": attempt.error, "reason": attempt.reason, "policies": attempt.policies}
    token = attempt.pending_token if outcome == SignInOutcome.SUCCESS else None
    if fastpath.enabled():
        attempt.token_id = fastpath.record(sign_in, token)
        return
    with transaction.atomic():
        if token is not None:
            attempt.token_id = AccessToken.objects.create(**token).pk
        SignIn.objects.create(**sign_in, token_id=attempt.token_id)


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "subject_token")
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/token/``: client credentials (RFC 6749 §4.4) and token exchange (RFC 8693)."""
    attempt = Attempt(ip=client_ip(request), at=timezone.now(), grant_type=request.POST.get("grant_type", ""))
    limited = _too_many(request, _peek_client_id(request), attempt)
    if limited:
        return limited
    reset = _attempt.set(attempt)
    try:
        _uri, headers, body, status = core().create_token_response(request)
    finally:
        _attempt.reset(reset)
    outcome = (SignInOutcome.SUCCESS if status == 200 else
               SignInOutcome.BLOCKED if attempt.reason.startswith("blocked by conditional access")
               else SignInOutcome.FAILURE)
    if status != 200 and not attempt.error:
        attempt.error = json.loads(body).get("error", "invalid_request")
    _record(attempt, outcome)
    if attempt.failed_authentication:
        _failed_authentication(attempt.client_id)
    response = _protocol_response(body, status, headers)
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    return response


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
@sensitive_variables("secret")
def introspect(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/introspect/`` (RFC 7662) for registered resource servers."""
    client_id, secret = request_credentials(request)
    limited = _too_many(request, client_id, introspection=True)
    if limited:
        return limited
    if tokens.authenticate_resource_server(client_id, secret) is None:
        response = JsonResponse({"error": "invalid_client"}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="introspection"'
        return response
    response = JsonResponse(tokens.introspect(request.POST.get("token", "")))
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/revoke/`` (RFC 7009): the client that holds a token revokes it."""
    attempt = Attempt(ip=client_ip(request), at=timezone.now())
    limited = _too_many(request, _peek_client_id(request), attempt)
    if limited:
        return limited
    reset = _attempt.set(attempt)
    try:
        _uri, headers, body, status = core().create_revocation_response(request)
    finally:
        _attempt.reset(reset)
    if attempt.failed_authentication:
        _failed_authentication(attempt.client_id)
    return _protocol_response(body, status, headers)
