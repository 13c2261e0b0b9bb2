"""The token endpoint's grants for people's clients: authorization code (RFC 6749 §4.1 with PKCE, RFC 7636) and
refresh token (RFC 6749 §6), with refresh-token rotation and family revocation on reuse (R27; docs/oauth.md,
"Authorization code, consent and refresh tokens").

``grant_issue`` takes one ``GrantRequest`` (read by ``governance.oauth.endpoints``) and returns the same
``issuance.Outcome`` the agents' grants do; every request, refused or not, leaves one sign-in row written by
``tokens.issuance_record``. The checks, in order: the client (public clients send their client id and prove PKCE;
confidential ones authenticate with their agent's credential), the code or refresh token (single use, unexpired,
the same client), then the person still active, the client approved and its agent active, the person's rights now
(R13) and conditional access for the client's agent (R20). A reused code or refresh token is ``invalid_grant``, and
everything issued from the same authorization (its family) is revoked, with a risk detection for the client's agent.

On PostgreSQL the code grant reads and writes through ``governance.oauth.fastpath`` (two prepared statements;
docs/oauth.md, "The exchange's fast path"); the ORM code here is the reference and the SQLite path, behind the same
functions (``_read``, ``_use_up``, ``_issue``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.choices import CredentialType
from agents.models import AgentIdentity
from governance.conditional_access.choices import RiskLevel
from governance.oauth import authorize, fastpath
from governance.oauth.choices import AuthMethod
from governance.oauth.consent import revoke_families
from governance.oauth.models import AuthorizationCode, OAuthClient, RefreshToken
from governance.risk import services as risk
from governance.risk.choices import DetectionKind
from governance.signin import resources, tokens
from governance.signin.choices import ActorKind, GrantType, SignInOutcome
from governance.signin.issuance import Outcome, Refusal
from governance.signin.models import AccessToken
from portal import audit

AUTHORIZATION_CODE = GrantType.AUTHORIZATION_CODE.value
REFRESH_TOKEN = GrantType.REFRESH_TOKEN.value
GRANTS = frozenset({AUTHORIZATION_CODE, REFRESH_TOKEN})
MAX_CLIENT_ID = authorize.LIMITS["client_id"]


@dataclass(frozen=True)
class GrantRequest:
    """One authorization-code or refresh-token request as the endpoint read it. Nothing in it is trusted yet."""

    grant_type: str
    client_id: str
    secret: str = field(repr=False)
    at: datetime
    ip: str | None = None
    code: str = field(default="", repr=False)
    redirect_uri: str = ""
    code_verifier: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    resource: str = ""
    scopes: tuple[str, ...] | None = None
    malformed: Refusal | None = None


@dataclass(frozen=True)
class GrantOutcome:
    """The agents' ``Outcome`` plus the refresh token issued with the access token, if any (its value, once)."""

    outcome: Outcome
    refresh_token: str = field(default="", repr=False)
    failed_authentication: str = ""  # the agent client id whose secret was wrong (counted toward lock-out)


# --- clients ---------------------------------------------------------------------------------------------------------
def authenticate(client_id: str, secret: str, at: datetime) -> tuple[OAuthClient | None, str]:
    """The OAuth client and "" when it authenticated; else None and why. A public client (``none``) sends its client
    id alone (PKCE proves the rest); a confidential one a secret of its agent's credential."""
    client = authorize.find_client(client_id)
    if client is None:
        return None, "unknown client"
    if client.token_endpoint_auth_method == AuthMethod.NONE:
        return client, ""
    identity = AgentIdentity.objects.filter(agent_id=client.agent_id).only("client_id").first()
    why = _secret_refusal(client, identity.client_id if identity else None, secret, at)
    return (None, why) if why else (client, "")


def credential_type(client: OAuthClient | None, request: GrantRequest) -> str:
    """How the client authenticated, for conditional access and the sign-in log (R28): a confidential client with
    its agent's secret (the only way these grants authenticate one), a public client not at all (""). Before the
    client is known, what it tried: a secret if it sent one."""
    if client is None:
        return CredentialType.SECRET.value if request.secret else ""
    return "" if client.token_endpoint_auth_method == AuthMethod.NONE else CredentialType.SECRET.value


def _secret_refusal(client: OAuthClient, identity_client_id: str | None, secret: str, at: datetime) -> str:
    """"" when ``secret`` is a live secret of the client agent's credential; otherwise why not."""
    authenticated = tokens.authenticate_client(identity_client_id, secret, at) if identity_client_id and secret \
        else None
    if authenticated is None or authenticated.agent.pk != client.agent_id:
        return "wrong client secret" if secret else "client secret missing"
    return ""


# --- recording -------------------------------------------------------------------------------------------------------
def _refuse(request: GrantRequest, client: OAuthClient | None, refusal: Refusal, *, user_id: int | None = None,
            requested: tuple[str, ...] = (), policies: tuple[dict, ...] = (), failed: str = "") -> GrantOutcome:
    recorded = tokens.Issuance(
        at=request.at, client_id=client.client_id if client else request.client_id, grant_type=request.grant_type,
        ip=request.ip, agent_id=client.agent_id if client else None,
        actor_kind=ActorKind.ON_BEHALF_OF if client else ActorKind.UNKNOWN, subject_id=user_id, requested=requested,
        outcome=SignInOutcome.BLOCKED if refusal.blocked else SignInOutcome.FAILURE, error=refusal.error,
        reason=refusal.reason or refusal.description, policies=policies, resource=request.resource,
        credential_type=credential_type(client, request))
    tokens.issuance_record(recorded)
    return GrantOutcome(Outcome(recorded, refusal=refusal), failed_authentication=failed)


def _issue(request: GrantRequest, client: OAuthClient, person, *, scopes: list[str], resource: str, family: str,
           policies: tuple[dict, ...], refresh_scopes: list[str] | None, code_id: int | None = None
           ) -> GrantOutcome | None:
    """A JWT for the person (sub = their opaque id, aud = the resource, agent_id = the client's agent) recorded with
    its sign-in row; with ``refresh_scopes`` also a new refresh token of the same family. On PostgreSQL a code
    (``code_id``) is marked used in the same statement, and None returned, nothing written, when it already was."""
    expires_at = tokens.token_expiry(request.at, None)
    agent = client.agent
    value, token_hash = tokens.mint(at=request.at, expires_at=expires_at, client_id=client.client_id,
                                    audience=resource, scopes=scopes, subject=str(person.oauth_subject),
                                    agent_id=agent.pk, blueprint_id=agent.blueprint_id)
    recorded = tokens.Issuance(
        at=request.at, client_id=client.client_id, grant_type=request.grant_type, ip=request.ip, agent_id=agent.pk,
        actor_kind=ActorKind.ON_BEHALF_OF, subject_id=person.pk, requested=tuple(request.scopes or ()),
        granted=tuple(scopes), outcome=SignInOutcome.SUCCESS, policies=policies, token_hash=token_hash,
        expires_at=expires_at, resource=request.resource, audience=resource, family=family,
        credential_type=credential_type(client, request))
    refresh_value, refresh = "", None
    if refresh_scopes is not None:
        refresh_value = "aiprt_" + secrets.token_urlsafe(32)
        refresh = {"token_hash": authorize.hash_value(refresh_value), "family": family, "client_id": client.pk,
                   "user_id": person.pk, "resource": resource, "scopes": refresh_scopes, "issued_at": request.at,
                   "expires_at": request.at + timedelta(seconds=settings.REFRESH_TOKEN_TTL)}
    if code_id is not None and fastpath.enabled():  # one statement: the code used, the three rows written
        if fastpath.issue(code_id, recorded, refresh) is None:
            return None
    else:
        tokens.issuance_record(recorded)
        if refresh is not None:
            RefreshToken.objects.create(**refresh)
    outcome = Outcome(recorded, access_token=value, expires_in=max(1, int((expires_at - request.at).total_seconds())))
    return GrantOutcome(outcome, refresh_token=refresh_value)


def _reuse(request: GrantRequest, client: OAuthClient, user_id: int, family: str, what: str) -> GrantOutcome:
    """A code or refresh token presented again: revoke its family, raise a medium detection for the client's agent,
    log the failed sign-in (R27). One transaction (a savepoint inside the caller's)."""
    with transaction.atomic():
        return _reused(request, client, user_id, family, what)


def _reused(request: GrantRequest, client: OAuthClient, user_id: int, family: str, what: str) -> GrantOutcome:
    revoke_families([family], f"{what} reuse", request.at)
    risk.record_detection(agent=client.agent, kind=DetectionKind.FAILED_CREDENTIALS, level=RiskLevel.MEDIUM,
                          key=f"{what.replace(' ', '-')}-reuse:{family}",
                          detail=f"{what} reused for client {client.client_id[:80]}; its tokens were revoked")
    return _refuse(request, client, Refusal("invalid_grant", f"The {what} was already used.", f"{what} reuse"),
                   user_id=user_id)


def _may_refresh(client: OAuthClient) -> bool:
    return not client.grant_types or REFRESH_TOKEN in client.grant_types


def _rights(person) -> frozenset[str]:
    """The person's data rights now, never a privileged one (R4, R13)."""
    return tokens.user_rights(person) - authorize.privileged_names()


def _still_allowed(request: GrantRequest, client: OAuthClient, person, scopes, resource_id: str,
                   rights: frozenset[str]) -> tuple[list[str], tuple[dict, ...], Refusal | None]:
    """The scopes the person may still delegate now (``rights``: their data rights, read with the code on
    PostgreSQL), and conditional access's verdicts (or why nothing)."""
    if not person.is_active:
        return [], (), Refusal("invalid_grant", "The person is no longer active.", "person disabled")
    why = authorize.client_refusal(client, request.at)
    if why:
        return [], (), Refusal("unauthorized_client", f"No token: {why}.", why)
    resource = resources.resolve(resource_id)
    if resource is None:
        return [], (), Refusal("invalid_target", "The resource is no longer registered.", "resource gone")
    granted = sorted(set(resource.accepts(scopes)) & rights)
    if not granted:
        return [], (), Refusal("invalid_grant", "The person no longer holds any of the consented scopes.",
                               "nothing consented is still the person's")
    evaluation = authorize.conditional_access_evaluation(client, ip=request.ip, at=request.at, scopes=granted,
                                                         resource=resource_id,
                                                         credential_type=credential_type(client, request))
    policies = tuple(evaluation.applied())
    if not evaluation.allowed:
        names = evaluation.blocked_by
        return granted, policies, Refusal("invalid_grant", f"Blocked by conditional access policy: {names}.",
                                          f"blocked by conditional access: {names}"[:300], blocked=True)
    return granted, policies, None


# --- the grants ------------------------------------------------------------------------------------------------------
def grant_issue(request: GrantRequest) -> GrantOutcome:
    """Serve one authorization-code or refresh-token request; always one sign-in row."""
    if request.malformed is not None:
        return _refuse(request, None, request.malformed)
    if request.grant_type == AUTHORIZATION_CODE:
        if fastpath.enabled():  # its statements are atomic one by one; see _authorization_code
            return _authorization_code(request)
        with transaction.atomic():
            return _authorization_code(request)
    client, why = authenticate(request.client_id, request.secret, request.at)
    if client is None:
        failed = "" if why == "unknown client" else request.client_id
        return _refuse(request, None, Refusal("invalid_client", reason=why), failed=failed)
    if client.grant_types and request.grant_type not in client.grant_types:
        return _unregistered_grant(request, client)
    with transaction.atomic():
        return _refresh_token(request, client)


def _unregistered_grant(request: GrantRequest, client: OAuthClient) -> GrantOutcome:
    return _refuse(request, client, Refusal("unauthorized_client", f"The client did not register the "
                                            f"{request.grant_type} grant.", "grant type not registered"))


def _read(client_id: str, code_hash: str | None) -> fastpath.Redemption:
    """The client and, when ``code_hash`` is given, its code with the code's person and their rights: one
    statement on PostgreSQL (``fastpath.read``); here the ORM, the reference, the code's row locked until the
    transaction ends (a second request for it waits, then finds it used)."""
    if not client_id or len(client_id) > MAX_CLIENT_ID or not (client_id.isascii() and client_id.isprintable()):
        return fastpath.Redemption(client=None)  # as ``authorize.find_client``: no such id reaches the database
    if fastpath.enabled():
        return fastpath.read(client_id, code_hash)
    client = authorize.find_client(client_id)
    if client is None:
        return fastpath.Redemption(client=None)
    identity = None if client.token_endpoint_auth_method == AuthMethod.NONE else \
        AgentIdentity.objects.filter(agent_id=client.agent_id).values_list("client_id", flat=True).first()
    code = AuthorizationCode.objects.select_for_update().select_related("user") \
        .filter(code_hash=code_hash, client=client).first() if code_hash else None
    if code is None:
        return fastpath.Redemption(client=client, identity_client_id=identity)
    return fastpath.Redemption(client=client, identity_client_id=identity, code=code, person=code.user,
                               rights=_rights(code.user))


def _use_up(code, at: datetime) -> bool:
    """Mark the code used (single use, whatever follows); False when a concurrent request used it first."""
    if fastpath.enabled():
        return fastpath.use_up(code.id, at)
    return AuthorizationCode.objects.filter(pk=code.id, used_at__isnull=True).update(used_at=at) == 1


def _authorization_code(request: GrantRequest) -> GrantOutcome:
    """The code grant. The client and its code are read in one step (``_read``); a confidential client's secret is
    checked before anything else. Every outcome after the code was found marks it used: a refusal through
    ``_use_up``, the tokens in the statement that writes them on PostgreSQL; a code found used there is a reuse."""
    complete = bool(request.code and request.redirect_uri and request.code_verifier)
    found = _read(request.client_id, authorize.hash_value(request.code) if complete else None)
    client, code = found.client, found.code
    if client is None:
        return _refuse(request, None, Refusal("invalid_client", reason="unknown client"))
    if client.token_endpoint_auth_method != AuthMethod.NONE:
        why = _secret_refusal(client, found.identity_client_id, request.secret, request.at)
        if why:
            return _refuse(request, None, Refusal("invalid_client", reason=why), failed=request.client_id)
    if client.grant_types and request.grant_type not in client.grant_types:
        return _unregistered_grant(request, client)
    if not complete:
        return _refuse(request, client, Refusal("invalid_request", "code, redirect_uri and code_verifier are "
                                                "required.", "missing code, redirect_uri or code_verifier"))
    if code is None:
        return _refuse(request, client, Refusal("invalid_grant", "The code is not valid.", "unknown code"))
    if code.used_at is not None:
        return _reuse(request, client, code.user_id, code.family, "authorization code")
    refusal, person, policies, granted = _code_refusal(request, client, found)
    if refusal is not None:
        if not _use_up(code, request.at):
            return _reuse(request, client, code.user_id, code.family, "authorization code")
        return _refuse(request, client, refusal, user_id=code.user_id, policies=policies)
    refresh = list(code.scopes) if code.offline_access and _may_refresh(client) else None
    # The ORM marks the (locked) code used here; on PostgreSQL the statement that writes the tokens does.
    if not fastpath.enabled() and not _use_up(code, request.at):
        return _reuse(request, client, code.user_id, code.family, "authorization code")
    issued = _issue(request, client, person, scopes=granted, resource=code.resource, family=code.family,
                    policies=policies, refresh_scopes=refresh, code_id=code.id)
    if issued is None:  # used by a concurrent request since it was read
        return _reuse(request, client, code.user_id, code.family, "authorization code")
    return issued


def _code_refusal(request: GrantRequest, client: OAuthClient, found: fastpath.Redemption
                  ) -> tuple[Refusal | None, object, tuple[dict, ...], list[str]]:
    """Why the found, unused code gets no token (None: it does), with the person, conditional access's verdicts and
    the scopes granted."""
    code, person = found.code, found.person
    if code.expires_at <= request.at:
        return Refusal("invalid_grant", "The code has expired.", "code expired"), person, (), []
    if request.redirect_uri != code.redirect_uri:
        return Refusal("invalid_grant", "redirect_uri differs from the authorization request's.",
                       "redirect_uri mismatch"), person, (), []
    if request.resource and request.resource != code.resource:
        return Refusal("invalid_target", "The resource differs from the authorized one.",
                       "resource differs from the code's"), person, (), []
    if not authorize.pkce_matches(request.code_verifier, code.code_challenge):
        return Refusal("invalid_grant", "The code_verifier does not match the challenge.",
                       "PKCE verification failed"), person, (), []
    granted, policies, refusal = _still_allowed(request, client, person, code.scopes, code.resource, found.rights)
    return refusal, person, policies, granted


def _refresh_token(request: GrantRequest, client: OAuthClient) -> GrantOutcome:
    if not request.refresh_token:
        return _refuse(request, client, Refusal("invalid_request", "refresh_token is required.",
                                                "missing refresh_token"))
    old = RefreshToken.objects.select_for_update().select_related("user") \
        .filter(token_hash=authorize.hash_value(request.refresh_token)).first()
    if old is None or old.client_id != client.pk:
        return _refuse(request, client, Refusal("invalid_grant", "The refresh token is not valid.",
                                                "unknown refresh token"))
    if old.used_at is not None:
        return _reuse(request, client, old.user_id, old.family, "refresh token")
    if old.revoked_at is not None or old.expires_at <= request.at:
        return _refuse(request, client, Refusal("invalid_grant", "The refresh token is no longer valid.",
                                                "refresh token revoked or expired"), user_id=old.user_id)
    if request.resource and request.resource != old.resource:
        return _refuse(request, client, Refusal("invalid_target", "The resource differs from the authorized one.",
                                                "resource differs from the refresh token's"), user_id=old.user_id)
    asked = {name for name in request.scopes or () if name != authorize.OFFLINE_ACCESS}  # clients repeat it
    wider = sorted(asked - set(old.scopes))
    if wider:
        return _refuse(request, client, Refusal("invalid_scope", f"Not in the original grant: {', '.join(wider)}.",
                                                ("wider than granted: " + ", ".join(wider))[:280]),
                       user_id=old.user_id, requested=tuple(sorted(asked)))
    old.used_at = request.at
    old.save(update_fields=["used_at"])
    person = old.user
    granted, policies, refusal = _still_allowed(request, client, person, sorted(asked) or old.scopes, old.resource,
                                                _rights(person))
    if refusal is not None:
        return _refuse(request, client, refusal, user_id=person.pk, policies=policies)
    return _issue(request, client, person, scopes=granted, resource=old.resource, family=old.family,
                  policies=policies, refresh_scopes=list(old.scopes))


# --- revocation (RFC 7009) -------------------------------------------------------------------------------------------
@transaction.atomic
def token_revoke(*, client: OAuthClient, value: str, hint: str = "") -> bool:
    """The client revokes one of its refresh tokens (the whole family goes: RFC 7009 §2.1 lets a server revoke the
    grant) or one of its access tokens. Another client's token is left alone, silently. One audit event."""
    now = timezone.now()
    revoked = {}
    if hint != "access_token" or value.count(".") != 2:
        refresh = RefreshToken.objects.filter(token_hash=authorize.hash_value(value), client=client).first()
        if refresh is not None:
            refresh_count, access_count = revoke_families([refresh.family], "revoked by the client", now)
            revoked = {"revoked_refresh": refresh_count, "revoked_access": access_count}
    if not revoked:
        claims = tokens.claims_of(value)
        if claims is None or claims.get("client_id") != client.client_id:
            return False
        count = AccessToken.objects.filter(token_hash=tokens.hash_token(claims["jti"]), agent_id=client.agent_id,
                                           revoked_at__isnull=True, expires_at__gt=now) \
            .update(revoked_at=now, revoked_reason="revoked by the client")
        revoked = {"revoked_refresh": 0, "revoked_access": count}
    if not any(revoked.values()):
        return False
    audit.record(actor=None, action="oauth.token.revoke", target=client.agent, workspace=client.agent.workspace,
                 after={"client_id": client.client_id, "by": "client", **revoked})
    return True
