"""The authorization endpoint's service: reading an authorization request, deciding the scopes a person may
consent to, and issuing the code (docs/oauth.md, "Authorization code, consent and refresh tokens"; R27).

``read_request`` checks a request in the order RFC 6749 §4.1.2.1 asks for: the client and its redirect URI first
(a problem there is shown on an error page, never sent to an unverified URI: ``AuthorizeError.redirect`` is False),
then everything else (sent back to the redirect URI with ``error``, ``state`` and ``iss``). ``grantable`` is the
one place that decides what a consent can carry: requested (or, when nothing is, what the client may ask for) ∩ the
client's allowed scopes ∩ the person's rights (R13) ∩ what the resource accepts, never a privileged permission (R4).
``code_issue`` writes the single-use code (only its hash) with one audit event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from governance.conditional_access import services as conditional_access
from governance.oauth import clients
from governance.oauth.models import AuthorizationCode, OAuthClient
from governance.signin import resources, tokens
from governance.signin.oauth import VSCHAR  # RFC 6749 Appendix A: a client id is printable ASCII
from portal import audit
from portal.models import Permission, User

OFFLINE_ACCESS = "offline_access"  # asks for a refresh token; never a permission of the catalog
MAX_STATE = 500
_PKCE_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # base64url of a SHA-256, no padding (RFC 7636 §4.2)
_PKCE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
PARAMETERS = ("response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
              "code_challenge_method", "resource")
LIMITS = {"client_id": 300, "redirect_uri": 2000, "scope": 2000, "state": MAX_STATE, "code_challenge": 128,
          "code_challenge_method": 20, "response_type": 40, "resource": 300}


class AuthorizeError(Exception):
    """Why an authorization request is refused. ``redirect`` says whether the redirect URI is verified (the error
    goes back to the client) or not (the person sees an error page)."""

    def __init__(self, error: str, description: str, *, redirect: bool = True):
        super().__init__(description)
        self.error, self.description, self.redirect = error, description, redirect


@dataclass(frozen=True)
class AuthorizationRequest:
    """An authorization request whose client and redirect URI are verified and whose parameters are well formed."""

    client: OAuthClient
    redirect_uri: str
    state: str
    requested: tuple[str, ...] | None  # None: no scope asked for
    offline_access: bool
    resource: resources.Resource
    code_challenge: str
    extra: dict = field(default_factory=dict)


# --- clients ---------------------------------------------------------------------------------------------------------
def find_client(client_id: str) -> OAuthClient | None:
    """The known OAuth client with this client id, or None. The token and revocation endpoints look clients up
    here, without fetching: a client reaches them only after the authorization endpoint resolved it."""
    if not client_id or len(client_id) > LIMITS["client_id"] or not VSCHAR.fullmatch(client_id):
        return None
    return OAuthClient.objects.select_related("agent__blueprint__publisher", "agent__workspace") \
        .filter(client_id=client_id).first()


def resolve_client(client_id: str) -> OAuthClient:
    """The client an authorization request names (``clients.resolve_client``: a client ID metadata document URL not
    yet known is fetched and registered); unknown or unusable → an error page, never a redirect."""
    if not client_id or not VSCHAR.fullmatch(client_id):  # NUL and other control characters never reach the database
        raise AuthorizeError("invalid_client", "The client is not known to this authorization server.",
                             redirect=False)
    try:
        client = clients.resolve_client(client_id)
    except clients.ClientError as error:
        raise AuthorizeError(error.error, f"The client cannot be used: {error.description}", redirect=False) \
            from None
    if client is None:
        raise AuthorizeError("invalid_client", "The client is not known to this authorization server.",
                             redirect=False)
    return client


def client_refusal(client: OAuthClient, now: datetime) -> str:
    """Why this client may get no code or token now ("" when it may): not approved, or its agent may not act
    (``clients.may_get_tokens``, ``tokens.refusal``: disabled, retired, expired)."""
    why = clients.may_get_tokens(client)
    if why:
        return why
    why = tokens.refusal(client.agent, now)
    return f"the client's registry entry is not active ({why})" if why else ""


def _well_formed(uri: str) -> bool:
    """A URI whose port, if any, is a port (a loopback URI matches on any port, not on any text after the colon)."""
    try:
        urlsplit(uri).port  # noqa: B018 - raises for a port that is not one
    except ValueError:
        return False
    return True


# --- reading the request ---------------------------------------------------------------------------------------------
def read_request(query) -> AuthorizationRequest:
    """Check an authorization request (a QueryDict); raise ``AuthorizeError`` on the first problem."""
    for name in PARAMETERS:
        if len(query.getlist(name)) > 1 and name in ("client_id", "redirect_uri"):
            raise AuthorizeError("invalid_request", f"The {name} parameter is repeated.", redirect=False)
    client_id, redirect_uri = query.get("client_id", ""), query.get("redirect_uri", "")
    client = resolve_client(client_id)
    if not redirect_uri and len(client.redirect_uris or []) == 1:
        redirect_uri = client.redirect_uris[0]
    if len(redirect_uri) > LIMITS["redirect_uri"] or not _well_formed(redirect_uri) \
            or not clients.redirect_uri_matches(client, redirect_uri):
        raise AuthorizeError("invalid_request", "The redirect URI is not one the client registered.", redirect=False)
    state = query.get("state", "")
    if len(state) > MAX_STATE:
        raise AuthorizeError("invalid_request", "The redirect URI is fine, but state is too long.", redirect=False)
    partial = {"client": client, "redirect_uri": redirect_uri, "state": state}
    try:
        return _read_rest(query, **partial)
    except AuthorizeError as error:
        error.request = partial
        raise


def _read_rest(query, *, client: OAuthClient, redirect_uri: str, state: str) -> AuthorizationRequest:
    repeated = next((n for n in PARAMETERS if len(query.getlist(n)) > 1), None)
    if repeated == "resource":
        raise AuthorizeError("invalid_target", "A code is issued for one resource only.")
    if repeated:
        raise AuthorizeError("invalid_request", f"The {repeated} parameter is repeated.")
    too_long = next((n for n in PARAMETERS if len(query.get(n, "")) > LIMITS[n]), None)
    if too_long:
        raise AuthorizeError("invalid_request", f"{too_long} is too long.")
    if query.get("response_type", "") != "code":
        raise AuthorizeError("unsupported_response_type", "Only response_type=code is supported.")
    challenge, method = query.get("code_challenge", ""), query.get("code_challenge_method", "")
    if not challenge:
        raise AuthorizeError("invalid_request", "PKCE is required: send code_challenge with method S256.")
    if method != "S256":
        raise AuthorizeError("invalid_request", "PKCE code_challenge_method must be S256 (plain is not accepted).")
    if not _PKCE_CHALLENGE.fullmatch(challenge):
        raise AuthorizeError("invalid_request", "code_challenge is not a base64url SHA-256 (43 characters).")
    resource = resources.resolve(query.get("resource", ""))
    if resource is None:
        raise AuthorizeError("invalid_target", "The resource is not a registered resource server.")
    scope = query.get("scope", "")
    names = [name for name in scope.split(" ") if name]
    if any(not _SCOPE.fullmatch(name) for name in names):
        raise AuthorizeError("invalid_scope", "scope holds a character that is not allowed.")
    why = client_refusal(client, timezone.now())
    if why:
        raise AuthorizeError("unauthorized_client", f"No authorization: {why}.")
    offline = OFFLINE_ACCESS in names
    requested = tuple(sorted({n for n in names if n != OFFLINE_ACCESS}))
    return AuthorizationRequest(client=client, redirect_uri=redirect_uri, state=state,
                                requested=requested if requested else None, offline_access=offline,
                                resource=resource, code_challenge=challenge)


def redirect_with(redirect_uri: str, **params: str) -> str:
    """The redirect URI with these parameters added to its query (RFC 6749 §4.1.2), ``iss`` always (RFC 9207)."""
    params = {"iss": settings.PORTAL_BASE_URL, **params}
    if not params.get("state"):
        params.pop("state", None)
    parts = urlsplit(redirect_uri)
    query = "&".join(filter(None, [parts.query, urlencode(params)]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


# --- what a consent may carry -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grantable:
    """The scopes a consent would carry, and those asked for that are left out (with why)."""

    scopes: tuple[str, ...]
    not_held: tuple[str, ...] = ()  # asked for, but the person does not hold them (R13)
    not_allowed: tuple[str, ...] = ()  # asked for, but not allowed to the client or not accepted by the resource


def privileged_names() -> frozenset[str]:
    return frozenset(Permission.objects.filter(privileged=True).values_list("name", flat=True))


def grantable(person: User, client: OAuthClient, resource: resources.Resource,
              requested: tuple[str, ...] | None) -> Grantable:
    """requested (or, when none, what the client may ask for) ∩ the client's allowed scopes (empty: any) ∩ the
    person's rights ∩ what the resource accepts, never a privileged permission (R4, R13)."""
    rights = tokens.user_rights(person)
    allowed = frozenset(client.allowed_scopes or ()) or None
    if requested is None:
        wanted = set(allowed if allowed is not None else rights)
    else:
        wanted = set(requested)
    privileged = privileged_names()
    fits = {name for name in wanted if (allowed is None or name in allowed) and name not in privileged}
    fits = set(resource.accepts(fits))
    granted = fits & rights
    return Grantable(scopes=tuple(sorted(granted)), not_held=tuple(sorted(fits - rights)),
                     not_allowed=tuple(sorted(wanted - fits)))


def conditional_access_evaluation(client: OAuthClient, *, ip: str | None, at: datetime, scopes,
                                  resource: str, credential_type: str = "") -> conditional_access.Evaluation:
    """Conditional access for the client's agent (R20), as at the token endpoint. ``credential_type``: how the client
    authenticated (R28; "" at the authorization endpoint, where it has not yet, and for a public client)."""
    policies = conditional_access.cached_active_policies()
    facts = conditional_access.agent_facts(client.agent, policies)
    context = conditional_access.AccessContext(ip=ip, at=at, scopes=frozenset(scopes), resource=resource,
                                               credential_type=credential_type)
    return conditional_access.evaluate(facts, context, policies)


# --- codes -----------------------------------------------------------------------------------------------------------
def hash_value(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def pkce_matches(verifier: str, challenge: str) -> bool:
    """S256: BASE64URL(SHA256(verifier)) == challenge, compared in constant time (RFC 7636 §4.6)."""
    if not _PKCE_VERIFIER.fullmatch(verifier or ""):
        return False
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
    return hmac.compare_digest(digest, challenge.encode("ascii"))


@transaction.atomic
def code_issue(*, actor: User, request: AuthorizationRequest, scopes: tuple[str, ...]) -> str:
    """Issue a single-use authorization code for the person's consent (R27): random, only its hash kept, living
    ``AUTHORIZATION_CODE_TTL`` seconds, starting a new family. Returns the code (never stored, logged or audited)."""
    if actor is None or not actor.is_authenticated or not actor.is_active:
        raise PermissionDenied("Only a signed-in person authorizes a client.")
    if not scopes:
        raise PermissionDenied("A code carries at least one scope.")
    now = timezone.now()
    code = secrets.token_urlsafe(32)
    row = AuthorizationCode.objects.create(
        code_hash=hash_value(code), client=request.client, user=actor, redirect_uri=request.redirect_uri,
        resource=request.resource.identifier, scopes=list(scopes), offline_access=request.offline_access,
        code_challenge=request.code_challenge, family=secrets.token_hex(16), created_at=now,
        expires_at=now + timedelta(seconds=settings.AUTHORIZATION_CODE_TTL))
    audit.record(actor=actor, action="oauth.code.issue", target=request.client.agent,
                 workspace=request.client.agent.workspace,
                 after={"client_id": request.client.client_id, "resource": row.resource, "scopes": row.scopes,
                        "offline_access": row.offline_access, "code_id": row.pk})
    return code
