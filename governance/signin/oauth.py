"""The OAuth 2.0 endpoints for agents: ``/oauth/token/``, ``/oauth/introspect/``, ``/oauth/revoke/``.

This module is the HTTP edge. Every endpoint reads its parameters once (``read_parameters``) and checks them before
anything reaches the database or the cache: a body over ``MAX_BODY_BYTES``, parameters in the URL, a repeated
parameter (RFC 6749 §3.1-3.2), a value over its ``MAX_LENGTHS`` or holding a character RFC 6749 Appendix A does not
allow (NUL and other control characters included) is ``invalid_request`` (400); HTTP Basic credentials that cannot be
read are ``invalid_client`` (401). The token endpoint reads the request into an immutable ``issuance.TokenRequest``
(``read_token_request``: credentials from HTTP Basic or the form, the grant type, the requested scopes, the subject
token, the client's address and the time; for a malformed request only a printable, capped form of what was sent,
for the sign-in log), applies the rate limit and the lock-out gate (``request_gate``, one round trip to the cache),
calls ``issuance.token_issue`` (which authenticates the client, decides the scopes, evaluates conditional access and
writes the sign-in row with the token), counts a failed client authentication, and turns the ``Outcome`` into the
response of RFC 6749 §5.1/§5.2. Revocation (RFC 7009) and introspection (RFC 7662) are handled here just as plainly.

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

Every token request that passes the rate limit, malformed or not, leaves one row in the sign-in log (``SignIn``) with
what was asked, what was granted, the outcome and the policies that applied; the row and the token are written
atomically. Failed client authentication is counted per client id and per client id at the request's address: past
``OAUTH_FAILED_AUTH_RISK`` failures (any address) a medium risk detection is raised; past ``OAUTH_FAILED_AUTH_LOCK``
failures from one address the client id is locked out at that address for ``OAUTH_LOCK_SECONDS``, so a stranger who
knows a client id cannot lock the agent out everywhere. Requests are rate-limited per client id and per IP; over a
limit the answer is 429 with ``Retry-After``. No secret or token value is logged, audited or echoed, and an error
description is a short excerpt at most.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import NamedTuple
from urllib.parse import unquote_plus

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from governance.conditional_access import services as conditional_access
from governance.signin import assertions, issuance, signals, tokens
from governance.signin.issuance import Refusal
from portal import network
from portal.cache import REDIS_UNAVAILABLE

# The parameters each endpoint reads. Any parameter, read or not, may appear at most once (RFC 6749 §3.1-3.2), except
# RFC 8707's resource (several are answered invalid_target: a token has exactly one audience) and RFC 8693's audience
# (not used); unknown parameters are otherwise ignored.
TOKEN_PARAMETERS = ("grant_type", "scope", "client_id", "client_secret", "subject_token", "subject_token_type",
                    "resource", "client_assertion_type", "client_assertion", "assertion")
TOKEN_HOLDER_PARAMETERS = ("token", "token_type_hint", "client_id", "client_secret")  # revocation, introspection
REPEATABLE = frozenset({"resource", "audience"})
SECRET_PARAMETERS = frozenset({"client_secret", "subject_token", "token", "client_assertion",
                               "assertion"})  # never kept from a malformed request

# The longest value each parameter may have, in characters (docs/design.md, The token endpoint). A client id is at
# most 64 characters where it is stored, so a longer one names no client (refused, not cut to one that might);
# the others leave room for any value this server issues or understands. The whole body is capped before it is read.
MAX_LENGTHS = {"client_id": 64, "client_secret": 256, "grant_type": 255, "scope": 2000, "subject_token": 4096,
               "subject_token_type": 255, "token": 4096, "token_type_hint": 64, "resource": 300,
               "client_assertion_type": 255, "client_assertion": 8192, "assertion": 8192}
MAX_BODY_BYTES = 16 * 1024
MAX_BASIC_CHARS = 2048  # base64 of the longest client id and secret with every character percent-encoded (1,284)
MAX_DESCRIPTION = 200  # error_description: a short excerpt, never a value sent back at length

# RFC 6749 Appendix A: client ids, secrets and the other values are printable ASCII (VSCHAR); a scope is scope
# tokens (NQCHAR: no space, quote or backslash) separated by spaces. Anything else (NUL, other control characters,
# characters outside ASCII, text that was not UTF-8) makes the request malformed.
VSCHAR = re.compile(r"[\x20-\x7e]*")
_SCOPE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_NOT_DESCRIPTION = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")  # RFC 6749 §5.2's error_description characters


# --- rate limits and lock-out ----------------------------------------------------------------------------------
def _redis(default=None):
    """The raw Redis client behind Django's cache (``default``: that cache, already looked up), or None (local
    memory cache)."""
    default = caches[DEFAULT_CACHE_ALIAS] if default is None else default
    if not getattr(default, "available", True):  # Redis failed a moment ago: this process's counters for now
        return None
    backend = getattr(default, "_cache", None)
    if not hasattr(backend, "get_client"):
        return None
    return backend.get_client(write=True)  # kept per backend by portal.cache, not built per call


# The gate as one Redis command: increment each counter (its expiry set when the window's first request creates it),
# then, when asked, whether the lock-out key exists, a client assertion's replay entry written if it is new (SET NX
# EX: 1 when this request is the first to present the assertion, else 0) and the version key's value. One command
# instead of a pipeline of six: the client packs and parses one (docs/design.md, "What one token request costs").
_GATE_LUA = """
local counters = tonumber(ARGV[2])
local out = {}
for i = 1, counters do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
  out[i] = count
end
local next_key = counters + 1
if ARGV[3] == '1' then
  out[#out + 1] = redis.call('EXISTS', KEYS[next_key])
  next_key = next_key + 1
end
if ARGV[5] == '1' then
  local first = redis.call('SET', KEYS[next_key], '1', 'NX', 'EX', ARGV[6])
  out[#out + 1] = first and 1 or 0
  next_key = next_key + 1
end
if ARGV[4] == '1' then
  out[#out + 1] = redis.call('GET', KEYS[next_key])
end
return out
"""
_gate_script = None


def _run_gate(client, keys: list[str], args: list[int]) -> list:
    """Run the gate's script on this Redis client (redis-py sends it by its SHA1, and its text once if this Redis
    has not seen it since it started)."""
    global _gate_script
    if _gate_script is None:
        _gate_script = client.register_script(_GATE_LUA)
    return _gate_script(keys=keys, args=args, client=client)


def _integer(raw) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _gate(keys: list[str], window: int, lock_of: str, *, version_of: str = "",
          replay: assertions.Replay | None = None) -> tuple[list[int], bool, int | None, assertions.Replay | None]:
    """Increment fixed-window counters (in the cache: Redis in production, shared by every worker), read a
    lock-out and, when asked, an integer version kept in the cache (``version_of``: its cache key), and write a
    client assertion's replay entry if it is new (``replay``; returned with ``first`` set), in one Redis round trip.
    While Redis does not answer, the counters and lock-outs are this process's own (``portal.cache``; docs/design.md,
    Faults): limits hold per worker and requests keep being served; the version is then None, and its reader asks
    the cache itself, and the replay entry is returned unwritten (the verifier writes it)."""
    bucket = int(time.time() // window)
    default = caches[DEFAULT_CACHE_ALIAS]  # once: each read through the ``cache`` proxy looks it up again
    names = [default.make_key(f"aip:{key}:{bucket}") for key in keys]
    client = _redis(default)
    if client is not None:
        extra = [default.make_key(_lock_key(lock_of))] if lock_of else []
        if replay is not None:
            extra.append(default.make_key(replay.key))  # the key cache.add would write: the two paths agree
        if version_of:
            extra.append(default.make_key(version_of))  # Django's Redis cache keeps an integer as its digits
        try:
            results = _run_gate(client, names + extra,
                                [window + 5, len(names), int(bool(lock_of)), int(bool(version_of)),
                                 int(replay is not None), replay.ttl if replay is not None else 0])
        except REDIS_UNAVAILABLE as error:
            default.redis_failed(error)  # the cache below now answers from this process's memory
        else:
            counts = [int(count) for count in results[:len(names)]]
            at = len(names)
            locked = bool(lock_of and results[at])
            at += bool(lock_of)
            if replay is not None:
                replay = replay._replace(first=results[at] == 1)
            return counts, locked, _integer(results[-1]) if version_of else None, replay
    counts = []
    for key in keys:
        name = f"aip:{key}:{bucket}"
        cache.add(name, 0, window + 5)
        try:
            counts.append(cache.incr(name))
        except ValueError:  # evicted between add and incr
            cache.set(name, 1, window + 5)
            counts.append(1)
    return counts, bool(lock_of) and cache.get(_lock_key(lock_of)) is not None, None, replay


class Gate(NamedTuple):
    """What the cache says about one OAuth request before it is served."""

    retry_after: int  # over a rate limit: the seconds until its window turns over (0: within every limit)
    locked: bool  # the client id is locked out at this address after repeated failed authentication
    policy_version: int | None = None  # conditional access's policy version, when it was asked for and read
    replay: assertions.Replay | None = None  # the client assertion's replay entry, ``first`` set once written


def request_gate(ip: str | None, client_id: str, *, introspection: bool = False,
                 policy_version: bool = False, replay: assertions.Replay | None = None) -> Gate:
    """The rate limits and the lock-out of one OAuth request: one round trip to the cache, which also reads the
    conditional-access policies' version when ``policy_version`` is set (the token endpoint evaluates the policies
    this process keeps, and the version says whether they are still current, without a second round trip) and
    writes a client assertion's replay entry when ``replay`` is given (docs/oauth.md, "Agents without secrets").

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
    version_of = conditional_access.POLICY_VERSION_KEY if policy_version else ""
    if not keys and not client_id and not version_of and replay is None:
        return Gate(0, False)
    counts, locked, version, replay = _gate(keys, 60, lock_of=_source(ip, client_id) if client_id else "",
                                            version_of=version_of, replay=replay)
    limited = any(c > limit for c, limit in zip(counts, limits, strict=True))
    return Gate(60 - int(time.time()) % 60 if limited else 0, locked, version, replay)


def _source(ip: str | None, client_id: str) -> str:
    """A client id as presented from one address (the address first: it never holds the separator)."""
    return f"{ip or '-'}|{client_id}"


def _lock_key(source: str) -> str:
    return f"aip:lock:{source}"


def is_locked(client_id: str, ip: str | None) -> bool:
    """Whether the client id is locked out at this address."""
    return bool(client_id) and cache.get(_lock_key(_source(ip, client_id))) is not None


def _lock(source: str) -> None:
    client = _redis()
    if client is not None:
        try:
            client.set(cache.make_key(_lock_key(source)), 1, ex=settings.OAUTH_LOCK_SECONDS)
        except REDIS_UNAVAILABLE as error:
            cache.redis_failed(error)
        else:
            return
    cache.set(_lock_key(source), 1, settings.OAUTH_LOCK_SECONDS)


def failed_authentication(client_id: str, ip: str | None) -> None:
    """Count a failed client authentication of a known client id, per client id and per client id at this address
    (one round trip). Past ``OAUTH_FAILED_AUTH_LOCK`` failures from one address in 15 minutes, the client id is
    locked out at that address for ``OAUTH_LOCK_SECONDS``: anyone who knows a client id can fail on purpose, and
    the agent itself, calling from elsewhere, must keep getting tokens. Risk hears of every failure with the count
    over every address (``signals.client_authentication_failed``)."""
    agent = tokens.agent_for_client_id(client_id)
    if agent is None:
        return
    source = _source(ip, client_id)
    (failures, from_source), _locked, _version, _replay = _gate([f"fail:{client_id}", f"fail:{source}"], 900,
                                                                lock_of="")
    locked_out = from_source >= settings.OAUTH_FAILED_AUTH_LOCK
    if locked_out:
        _lock(source)
    signals.client_authentication_failed.send(sender=None, agent=agent, failures=failures, locked_out=locked_out,
                                              address=ip or "")


# --- reading requests ------------------------------------------------------------------------------------------
def client_ip(request: HttpRequest) -> str | None:
    """The client's address, through the trusted proxies (portal.network)."""
    return network.client_ip(request)


class Parameters(NamedTuple):
    """An OAuth request's parameters as read once: each value the endpoint reads ("" when absent), the client's
    credentials (from HTTP Basic, else from the form) and what makes the request malformed, if anything. The values
    of a malformed request are only fit for the sign-in log (``printable``); its secret is dropped."""

    values: dict[str, str]
    client_id: str
    secret: str
    malformed: Refusal | None


def printable(value: str, limit: int) -> str:
    """A value as the sign-in log may keep it: printable ASCII, any other character as its backslash escape (NUL as
    ``\\x00``), at most ``limit`` characters. PostgreSQL refuses NUL in text; people reading the log need no
    terminal escapes."""
    value = value[:limit]
    if VSCHAR.fullmatch(value):
        return value
    return "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in value)[:limit]


def _refusal(error: str, description: str) -> Refusal:
    return Refusal(error, description, f"malformed request: {description}")


@sensitive_variables("decoded", "secret")
def decode_basic(payload: str) -> tuple[str, str, str]:
    """(client id, secret, problem) from the base64 part of an HTTP Basic header (RFC 6749 §2.3.1: client id and
    secret each form-encoded in UTF-8, joined by a colon). ``problem`` says why the credentials cannot be read ("":
    they can); then the secret is "" and the client id whatever could be read of it."""
    if len(payload) > MAX_BASIC_CHARS:
        return "", "", "The Basic credentials are too long."
    try:
        decoded = base64.b64decode(payload, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return "", "", "The Basic credentials are not base64-encoded UTF-8."
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return client_id, "", "The Basic credentials have no colon between client id and secret."
    try:
        client_id, secret = unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")
    except UnicodeDecodeError:
        return client_id, "", "The Basic credentials are not form-encoded UTF-8."
    for part, value, name in (("client id", client_id, "client_id"), ("secret", secret, "client_secret")):
        if len(value) > MAX_LENGTHS[name] or not VSCHAR.fullmatch(value):
            return client_id, "", f"The {part} in the Basic credentials is too long or holds a character that is " \
                                  f"not allowed."
    return client_id, secret, ""


def content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _invalid_value(values: dict[str, str]) -> str:
    """Why one of these values cannot be read ("": every one can)."""
    for name, value in values.items():
        if len(value) > MAX_LENGTHS[name]:
            return f"{name} is too long (at most {MAX_LENGTHS[name]} characters)."
        if not (_SCOPE if name == "scope" else VSCHAR).fullmatch(value):
            return f"{name} holds a character that is not allowed."
    return ""


@sensitive_variables("secret", "values", "form")
def read_parameters(request: HttpRequest, names: tuple[str, ...]) -> Parameters:
    """Read and check an OAuth request's parameters before anything of it reaches the database or the cache.

    Malformed, in the order checked: a body over ``MAX_BODY_BYTES`` (not read at all), parameters in the URL (they
    belong in the body, where they are not logged), a body that is not a readable form, a parameter repeated
    (RFC 6749 §3.1-3.2), a value over its ``MAX_LENGTHS`` or holding a character RFC 6749 Appendix A does not allow
    (``invalid_request``, 400); HTTP Basic credentials that are not base64 of UTF-8, have no colon or hold such a
    value (``invalid_client``, 401: the client's authentication cannot be read)."""
    values = dict.fromkeys(names, "")
    problem = ""
    if content_length(request) > MAX_BODY_BYTES:
        problem = f"The request body is too large (at most {MAX_BODY_BYTES} bytes)."
    elif request.META.get("QUERY_STRING"):
        problem = "URL query parameters are not allowed"
    else:
        try:
            form = request.POST
        except (SuspiciousOperation, MultiPartParserError):  # too many fields, a broken multipart body
            form, problem = None, "The request body is not a readable form."
        if form is not None:
            repeated = next((name for name, sent in form.lists() if len(sent) > 1 and name not in REPEATABLE), None)
            if repeated is not None:
                problem = f"Duplicate {printable(repeated, 40)} parameter."
            values.update((name, form.get(name, "")) for name in names)
            problem = problem or _invalid_value(values)
    malformed = _refusal("invalid_request", problem) if problem else None
    scheme, _space, payload = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() == "basic":
        client_id, secret, problem = decode_basic(payload.strip())
        if problem and malformed is None:
            malformed = _refusal("invalid_client", problem)
    else:
        client_id, secret = values.get("client_id", ""), values.get("client_secret", "")
    if malformed is None:
        return Parameters(values, client_id, secret, None)
    kept = {name: "" if name in SECRET_PARAMETERS else printable(value, MAX_LENGTHS[name])
            for name, value in values.items()}
    return Parameters(kept, printable(client_id, MAX_LENGTHS["client_id"]), "", malformed)


@sensitive_variables("parameters")
def read_token_request(request: HttpRequest) -> issuance.TokenRequest:
    """The token request as a value, read once (``read_parameters``). Parameters sent empty count as absent (RFC 6749
    §3.1); so does a ``scope`` that names no scope. A request without a grant type is malformed too."""
    parameters = read_parameters(request, TOKEN_PARAMETERS)
    form, malformed = parameters.values, parameters.malformed
    if malformed is None and not form["grant_type"]:
        malformed = Refusal("invalid_request", "Request is missing grant type.", "request is missing grant type")
    if malformed is None and len(request.POST.getlist("resource")) > 1:
        malformed = Refusal("invalid_target", "A token is issued for one resource only.", "several resources")
    if malformed is None:
        malformed = _assertion_problem(form, parameters.secret)
    return issuance.TokenRequest(
        grant_type=form["grant_type"], client_id=parameters.client_id, secret=parameters.secret,
        scopes=tuple(name for name in form["scope"].split(" ") if name) or None,
        subject_token=form["subject_token"], subject_token_type=form["subject_token_type"],
        ip=client_ip(request), at=timezone.now(), malformed=malformed, resource=form["resource"],
        client_assertion=form["client_assertion"] if malformed is None else "",
        assertion=form["assertion"] if malformed is None else "")


def _assertion_problem(form: dict, secret: str) -> Refusal | None:
    """RFC 7521 §4.2 and RFC 7523: an assertion comes with its type, never with a secret; the jwt-bearer grant needs
    its ``assertion`` (docs/oauth.md, "Agents without secrets")."""
    if form["client_assertion"] or form["client_assertion_type"]:
        if form["client_assertion_type"] != assertions.CLIENT_ASSERTION_TYPE or not form["client_assertion"]:
            return Refusal("invalid_request", "client_assertion_type must be "
                           "urn:ietf:params:oauth:client-assertion-type:jwt-bearer, with a client_assertion.",
                           "unsupported or incomplete client assertion")
        if secret:
            return Refusal("invalid_request", "Authenticate with a client secret or a client assertion, not both.",
                           "a client secret and a client assertion together")
    if form["grant_type"] == assertions.JWT_BEARER_GRANT and not form["assertion"]:
        return Refusal("invalid_request", "The jwt-bearer grant needs an assertion.", "jwt-bearer without assertion")
    return None


# --- responses -------------------------------------------------------------------------------------------------
def no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    return response


def too_many_requests(retry_after: int) -> HttpResponse:
    """429 (RFC 6585) with ``Retry-After``: the seconds until the rate window turns over. The body is RFC 6749's
    error shape with ``temporarily_unavailable`` (RFC 6749 §4.1.2.1: the server cannot serve the request now);
    ``slow_down`` is the device flow's answer to polling too fast (RFC 8628), and this server has no device flow."""
    body = {"error": "temporarily_unavailable",
            "error_description": f"Too many requests; retry in {retry_after} seconds."}
    response = HttpResponse(json.dumps(body), status=429, content_type="application/json")
    response["Retry-After"] = str(retry_after)
    return no_store(response)


def _description(text: str) -> str:
    """An error description as RFC 6749 §5.2 allows it (printable ASCII without quote or backslash), cut to a short
    excerpt: a scope list, a policy name, never a long value sent back."""
    text = _NOT_DESCRIPTION.sub("?", text.replace('"', "'"))
    return text if len(text) <= MAX_DESCRIPTION else text[:MAX_DESCRIPTION - 3] + "..."


def error_response(refusal: Refusal) -> HttpResponse:
    """RFC 6749 §5.2: 400 with the error and its description; 401 for a client that failed to authenticate, with
    the challenge oauthlib used to send (kept so that clients see no change)."""
    body = {"error": refusal.error}
    if refusal.description:
        body["error_description"] = _description(refusal.description)
    status = 401 if refusal.error == "invalid_client" else 400
    response = HttpResponse(json.dumps(body), status=status, content_type="application/json")
    if status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{refusal.error}"'
    return no_store(response)


def _token_response(token_request: issuance.TokenRequest, outcome: issuance.Outcome) -> HttpResponse:
    """RFC 6749 §5.1 (with RFC 8693's ``issued_token_type`` for an exchange), never cached."""
    if outcome.refusal is not None:
        return error_response(outcome.refusal)
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
@sensitive_post_parameters("client_secret", "subject_token", "client_assertion", "assertion")
def token(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/token/``: client credentials (RFC 6749 §4.4) and token exchange (RFC 8693). A malformed request
    is counted against its address only: its client id is not one to trust."""
    token_request = read_token_request(request)
    client_id = token_request.client_id if token_request.malformed is None else ""
    assertion = token_request.client_assertion or token_request.assertion  # "" when malformed
    replay = assertions.replay_entry(assertion, token_request.at.timestamp()) if assertion else None
    gate = request_gate(token_request.ip, client_id, policy_version=True, replay=replay)
    if gate.retry_after or gate.locked:  # the assertion is not looked at: presenting it again is no replay
        assertions.release(gate.replay)
    if gate.retry_after:
        return too_many_requests(gate.retry_after)
    outcome = issuance.token_issue(token_request, locked=gate.locked, policy_version=gate.policy_version,
                                   replay=gate.replay)
    if outcome.failed_authentication:
        failed_authentication(client_id, token_request.ip)
    return _token_response(token_request, outcome)


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
@sensitive_variables("parameters")
def introspect(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/introspect/`` (RFC 7662) for registered resource servers."""
    parameters = read_parameters(request, TOKEN_HOLDER_PARAMETERS)
    malformed = parameters.malformed
    gate = request_gate(client_ip(request), "" if malformed else parameters.client_id, introspection=True)
    if gate.retry_after:
        return too_many_requests(gate.retry_after)
    if malformed is not None and malformed.error != "invalid_client":
        return error_response(malformed)
    if malformed is not None or tokens.authenticate_resource_server(parameters.client_id, parameters.secret) is None:
        response = JsonResponse({"error": "invalid_client"}, status=401)
        response["WWW-Authenticate"] = 'Basic realm="introspection"'
        return response
    response = JsonResponse(tokens.introspect(parameters.values["token"]))
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
@require_POST
@sensitive_post_parameters("client_secret", "token")
@sensitive_variables("parameters")
def revoke(request: HttpRequest) -> HttpResponse:
    """``POST /oauth/revoke/`` (RFC 7009): the client that holds a token revokes it. Success is 200 with an empty
    body whether or not the token was one of the client's (RFC 7009 §2.2); no sign-in row is written."""
    parameters = read_parameters(request, TOKEN_HOLDER_PARAMETERS)
    ip, client_id = client_ip(request), parameters.client_id
    gate = request_gate(ip, "" if parameters.malformed else client_id)
    if gate.retry_after:
        return too_many_requests(gate.retry_after)
    if parameters.malformed is not None:
        return error_response(parameters.malformed)
    value = parameters.values["token"]
    if not value:
        return error_response(Refusal("invalid_request", "Missing token parameter."))
    client = None if gate.locked else tokens.authenticate_client(client_id, parameters.secret)
    if client is None:
        if not gate.locked:
            failed_authentication(client_id, ip)
        return error_response(Refusal("invalid_client"))
    if parameters.values["token_type_hint"] == "refresh_token":  # there are no refresh tokens
        return error_response(Refusal("unsupported_token_type"))
    tokens.token_revoke(client=client, value=value)
    return HttpResponse("", content_type="application/json")
