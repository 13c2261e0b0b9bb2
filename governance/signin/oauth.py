"""The OAuth 2.0 endpoints for agents: ``/oauth/token/``, ``/oauth/introspect/``, ``/oauth/revoke/``.

This module is the HTTP edge. The token endpoint reads the request once into an immutable
``issuance.TokenRequest`` (``read_token_request``: credentials from HTTP Basic or the form, the grant type, the
requested scopes, the subject token, the client's address and the time; a repeated parameter, a missing grant type
or a query string in the URL is noted as ``invalid_request``, RFC 6749 §3.1-3.2), applies the rate limit and the
lock-out gate (``request_gate``, one round trip to the cache), calls ``issuance.token_issue`` (which authenticates the
client, decides the scopes, evaluates conditional access and writes the sign-in row with the token), counts a failed
client authentication, and turns the ``Outcome`` into the response of RFC 6749 §5.1/§5.2. Revocation (RFC 7009) and
introspection (RFC 7662) are handled here just as plainly.

Why neither oauthlib nor django-oauth-toolkit serves these endpoints. They used to: DOT's request adapter and
validator base class over oauthlib's token and revocation endpoints. But everything that decides was ours already:
the clients are the agents' own credentials (an HMAC of a random secret, where DOT's application secrets are
PBKDF2-hashed at a third of a second of CPU per request), the scopes come from ``tokens`` and conditional access,
token exchange was a grant type written here, and tokens are stored our way (hashed, with their sign-in row).
What the framework added was the frame around it: parsing, grant dispatch, error bodies. Fitting the decisions into
its validator callbacks meant gathering the request's state across a dozen callbacks into a per-request context
variable for the view to read back, decoding the client's credentials twice, and writing the token out of the
flow's sight. The frame itself is a few pages of RFC 6749, 7009 and 8693 for two grant types and three endpoints,
so it is written out here, with the same error codes, descriptions, status codes and headers oauthlib produced.

Every token request that passes the rate limit leaves one row in the sign-in log (``SignIn``) with what was asked,
what was granted, the outcome and the policies that applied; the row and the token are written atomically. Failed
client authentication is counted per client id: past ``OAUTH_FAILED_AUTH_RISK`` a risk detection is raised, past
``OAUTH_FAILED_AUTH_LOCK`` the client id is locked out for ``OAUTH_LOCK_SECONDS``. Requests are rate-limited per
client id and per IP. No secret or token value is logged, audited or echoed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from governance.signin import issuance, signals, tokens
from governance.signin.issuance import Refusal
from portal import network

# The parameters the token endpoint reads: each at most once (RFC 6749 §3.1-3.2). Others are ignored, as RFC 6749
# requires of unknown parameters (RFC 8693's resource and audience may repeat; they are not used).
TOKEN_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret", "subject_token", "subject_token_type")


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
    """Count a failed client authentication; past ``OAUTH_FAILED_AUTH_LOCK`` in 15 minutes lock the client id out
    for ``OAUTH_LOCK_SECONDS``. Risk hears of every failure (``signals.client_authentication_failed``)."""
    agent = tokens.agent_for_client_id(client_id)
    if agent is None:
        return
    failures = _count(f"fail:{client_id}", 900)
    locked_out = failures >= settings.OAUTH_FAILED_AUTH_LOCK
    if locked_out:
        _lock(client_id)
    signals.client_authentication_failed.send(sender=None, agent=agent, failures=failures, locked_out=locked_out)


# --- reading requests ------------------------------------------------------------------------------------------
def client_ip(request: HttpRequest) -> str | None:
    """The client's address, through the trusted proxies (portal.network)."""
    return network.client_ip(request)


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


@sensitive_variables("secret")
def read_token_request(request: HttpRequest) -> issuance.TokenRequest:
    """The token request as a value, read once. Parameters sent empty count as absent (RFC 6749 §3.1); so does a
    ``scope`` that names no scope."""
    form = request.POST
    client_id, secret = request_credentials(request)
    return issuance.TokenRequest(
        grant_type=form.get("grant_type", ""), client_id=client_id, secret=secret,
        scopes=tuple(name for name in form.get("scope", "").split(" ") if name) or None,
        subject_token=form.get("subject_token", ""), subject_token_type=form.get("subject_token_type", ""),
        ip=client_ip(request), at=timezone.now(), malformed=_malformed(request))


def _malformed(request: HttpRequest) -> Refusal | None:
    """What makes a token request unreadable, as RFC 6749's ``invalid_request`` (None: nothing)."""
    if request.META.get("QUERY_STRING"):  # parameters belong in the body, where they are not logged
        return Refusal("invalid_request", "URL query parameters are not allowed")
    for name in TOKEN_PARAMETERS:
        if len(request.POST.getlist(name)) > 1:
            return Refusal("invalid_request", f"Duplicate {name} parameter.")
    if not request.POST.get("grant_type"):
        return Refusal("invalid_request", "Request is missing grant type.")
    return None


# --- responses -------------------------------------------------------------------------------------------------
def _slow_down() -> HttpResponse:
    response = JsonResponse({"error": "slow_down", "error_description": "Too many requests; retry later."},
                            status=429)
    response["Retry-After"] = "60"
    return response


def _error(refusal: Refusal) -> HttpResponse:
    """RFC 6749 §5.2: 400 with the error and its description; 401 for a client that failed to authenticate, with
    the challenge oauthlib used to send (kept so that clients see no change)."""
    body = {"error": refusal.error}
    if refusal.description:
        body["error_description"] = refusal.description
    status = 401 if refusal.error == "invalid_client" else 400
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    if status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{refusal.error}"'
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    return response


def _token_response(token_request: issuance.TokenRequest, outcome: issuance.Outcome) -> HttpResponse:
    """RFC 6749 §5.1 (with RFC 8693's ``issued_token_type`` for an exchange), never cached."""
    if outcome.refusal is not None:
        return _error(outcome.refusal)
    body = {"access_token": outcome.access_token, "expires_in": outcome.expires_in, "token_type": "Bearer",
            "scope": outcome.scope}
    if token_request.grant_type == issuance.TOKEN_EXCHANGE:
        body["issued_token_type"] = issuance.ACCESS_TOKEN_TYPE
    response = HttpResponse(json.dumps(body), content_type="application/json")
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    return response


# --- views -----------------------------------------------------------------------------------------------------
@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "subject_token")
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/token/``: client credentials (RFC 6749 §4.4) and token exchange (RFC 8693)."""
    token_request = read_token_request(request)
    client_id = token_request.client_id[:64]
    limited, locked = request_gate(token_request.ip, client_id)
    if limited:
        return _slow_down()
    outcome = issuance.token_issue(token_request, locked=locked)
    if outcome.failed_authentication:
        _failed_authentication(client_id)
    return _token_response(token_request, outcome)


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
@sensitive_variables("secret")
def introspect(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/introspect/`` (RFC 7662) for registered resource servers."""
    client_id, secret = request_credentials(request)
    limited, _locked = request_gate(client_ip(request), client_id, introspection=True)
    if limited:
        return _slow_down()
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
@sensitive_variables("secret")
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/revoke/`` (RFC 7009): the client that holds a token revokes it. Success is 200 with an empty
    body whether or not the token was one of the client's (RFC 7009 §2.2); no sign-in row is written."""
    client_id, secret = request_credentials(request)
    limited, locked = request_gate(client_ip(request), client_id[:64])
    if limited:
        return _slow_down()
    if request.META.get("QUERY_STRING"):
        return _error(Refusal("invalid_request", "URL query parameters are not allowed"))
    value = request.POST.get("token", "")
    if not value:
        return _error(Refusal("invalid_request", "Missing token parameter."))
    client = None if locked else tokens.authenticate_client(client_id, secret)
    if client is None:
        if not locked:
            _failed_authentication(client_id[:64])
        return _error(Refusal("invalid_client"))
    if request.POST.get("token_type_hint") == "refresh_token":  # there are no refresh tokens
        return _error(Refusal("unsupported_token_type"))
    tokens.token_revoke(client=client, value=value)
    return HttpResponse("", content_type="application/json")
