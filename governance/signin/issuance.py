"""The token endpoint's service: one token request in, one outcome out, one row (or two) written.

``oauth.token`` reads the HTTP request once into a ``TokenRequest`` (an immutable value: grant type, client id and
secret as presented, requested scopes, subject token, client IP, time), applies the rate limit and lock-out gate,
and calls ``token_issue``, which goes straight down:

1. a malformed request (``TokenRequest.malformed``, found while parsing) and an unsupported grant type are refused
   before anything is read about the client (the client id as presented is logged; no agent is looked up);
2. the client authenticates with the agent's own credentials (``tokens.authenticate_client``; a signed client
   assertion or the jwt-bearer grant's assertion is verified by ``assertions`` instead, then the client is read by
   its id with ``tokens.authenticate_identity``: docs/oauth.md, "Agents without secrets"); a client id locked
   out at the request's address after repeated failures there is refused without trying, and a wrong secret is
   marked on the outcome so that the endpoint counts it toward risk and lock-out;
3. an agent that may get no token now is refused (``tokens.refusal``: disabled, expired, its user account disabled);
   a ``resource`` that is not registered is ``invalid_target`` (``resources.resolve``; none named: the portal API);
4. the scopes are decided, only ever among those the resource accepts. Client credentials: what was asked for
   (everything the agent holds when nothing was), all of which the agent must hold; a user-account agent never
   holds more than its user's own rights. Token exchange (RFC 8693): what was asked for (everything, when nothing
   was) ∩ the agent's delegated permissions ∩ the person's rights ∩ the subject token's scopes, at least one;
5. conditional access is evaluated for those scopes: a block wins; report-only verdicts are recorded, not enforced;
6. the result, refused or issued, is recorded by ``tokens.issuance_record``: the sign-in row, and the token row with
   it in the same statement (PostgreSQL) or transaction. The token is a JWT for exactly that resource
   (``tokens.mint``).

The ``Outcome`` says what was recorded and either the token (its value, once) or the refusal the client is told.
Nothing here knows HTTP, and nothing is shared between the steps but plain values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agents.choices import CredentialType, IdentityType
from governance.conditional_access import services as conditional_access
from governance.signin import assertions, resources, tokens
from governance.signin.choices import ActorKind, GrantType, SignInOutcome

CLIENT_CREDENTIALS = GrantType.CLIENT_CREDENTIALS.value
TOKEN_EXCHANGE = GrantType.TOKEN_EXCHANGE.value
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523 §2.1


@dataclass(frozen=True)
class Refusal:
    """Why no token: the RFC 6749 error code and description the client is told, and the reason the sign-in log
    keeps (the description speaks to the client's developer, the reason to administrators; either may be empty)."""

    error: str
    description: str = ""
    reason: str = ""
    blocked: bool = False  # refused by conditional access: the sign-in's outcome is "blocked", not "failure"


@dataclass(frozen=True)
class TokenRequest:
    """One token request as the endpoint read it. Nothing in it is trusted yet."""

    grant_type: str
    client_id: str
    secret: str = field(repr=False)
    scopes: tuple[str, ...] | None  # None: no scope asked for (the default: everything the client may hold)
    subject_token: str = field(repr=False)
    subject_token_type: str
    ip: str | None
    at: datetime
    # What parsing found wrong (a repeated, missing, over-long or unreadable parameter), if anything; then the other
    # fields hold only a printable, capped form of what was sent, for the sign-in log.
    malformed: Refusal | None = None
    resource: str = ""  # RFC 8707's resource parameter, as sent (empty: none, the portal API)
    # A signed client assertion (RFC 7523 §2.2: the agent's own JWT, or its platform's token) instead of a secret,
    # and the jwt-bearer grant's ``assertion`` (RFC 7523 §2.1); docs/oauth.md, "Agents without secrets".
    client_assertion: str = field(default="", repr=False)
    assertion: str = field(default="", repr=False)


@dataclass(frozen=True)
class Outcome:
    """What a token request came to: what the sign-in log recorded, and either the token or the refusal."""

    recorded: tokens.Issuance
    refusal: Refusal | None = None
    access_token: str = field(default="", repr=False)
    expires_in: int = 0
    failed_authentication: bool = False  # unknown client or wrong secret (not a lock-out): counts toward lock-out

    @property
    def scope(self) -> str:
        return " ".join(self.recorded.granted)


@dataclass(frozen=True)
class _Caller:
    """Who the sign-in row names: the client id, its agent, whom the token would speak for."""

    client_id: str = ""
    agent_id: int | None = None
    actor_kind: str = ActorKind.UNKNOWN
    subject_id: int | None = None
    blueprint_id: int | None = None
    subject_sub: str | None = None  # the person's opaque ``sub``, for a token that speaks for one
    credential_type: str = ""  # how the client authenticated (agents.choices.CredentialType)
    credential_issuer: str = ""  # a federated credential's issuer


def token_issue(request: TokenRequest, *, locked: bool = False, policy_version: int | None = None,
                replay: assertions.Replay | None = None) -> Outcome:
    """Decide one token request and record it. ``locked``: the gate found its client id locked out;
    ``policy_version``: the conditional-access policies' version, if the gate read it; ``replay``: the client
    assertion's replay entry, if the gate wrote it."""
    outcome = _decide(request, locked, policy_version, replay)
    tokens.issuance_record(outcome.recorded)
    return outcome


def _decide(request: TokenRequest, locked: bool, policy_version: int | None,
            replay: assertions.Replay | None = None) -> Outcome:
    if request.malformed is not None:  # its values were made printable and cut short for the log by the edge
        return _refuse(request, _Caller(request.client_id), request.malformed, requested=request.scopes or ())
    if request.grant_type not in (CLIENT_CREDENTIALS, TOKEN_EXCHANGE, JWT_BEARER):
        return _refuse(request, _Caller(request.client_id), Refusal("unsupported_grant_type"))
    exchange = request.grant_type == TOKEN_EXCHANGE
    if locked:
        return _unauthenticated(request, exchange,
                                "client id locked at this address after repeated failed authentication")
    credential_type, credential_issuer = CredentialType.SECRET, ""
    if request.grant_type == JWT_BEARER or request.client_assertion:
        verified = (assertions.verify_grant_assertion(request.client_id, request.assertion, request.at,
                                                      replay=replay)
                    if request.grant_type == JWT_BEARER else
                    assertions.verify_client_assertion(request.client_id, request.client_assertion, request.at,
                                                       replay=replay))
        client = None if not verified.ok else verified.client if verified.client is not None \
            else tokens.authenticate_identity(verified.client_id, request.at)
        if client is None:
            return _unverified(request, exchange, verified)
        credential_type, credential_issuer = verified.credential_type, verified.issuer
    else:
        client = tokens.authenticate_client(request.client_id, request.secret, request.at)
        if client is None:
            return _unauthenticated(request, exchange, "unknown client or wrong, expired or revoked secret",
                                    failed=True)
    agent = client.agent
    if exchange:  # the token will speak for the subject token's person, once that is known
        caller = _Caller(client.client_id, agent.pk, ActorKind.ON_BEHALF_OF, blueprint_id=agent.blueprint_id,
                         credential_type=credential_type, credential_issuer=credential_issuer)
    else:
        runs_as = agent.run_as_user_id if client.actor_kind == ActorKind.USER_ACCOUNT else None
        caller = _Caller(client.client_id, agent.pk, client.actor_kind, runs_as, agent.blueprint_id,
                         credential_type=credential_type, credential_issuer=credential_issuer)
    why = tokens.refusal(agent, request.at)
    if why:
        return _refuse(request, caller, Refusal("unauthorized_client", f"No token: {why}.", why))
    resource = resources.resolve(request.resource)
    if resource is None:
        return _refuse(request, caller, unknown_resource(request.resource))
    if exchange:
        return _token_exchange(request, client, caller, resource, policy_version)
    return _client_credentials(request, client, caller, resource, policy_version)


def unknown_resource(identifier: str) -> Refusal:
    """RFC 8707 §2: a resource that is not registered (matched exactly) gets no token."""
    return Refusal("invalid_target", "The resource is not a registered resource server.",
                   f"unknown resource {identifier}"[:300])


def _presented(client_id: str, exchange: bool):
    """The agent whose client id was presented by a client that did not authenticate (or None), and the actor
    kind its sign-in row records."""
    agent = tokens.agent_for_client_id(client_id)
    if agent is None:
        return None, ActorKind.UNKNOWN
    if exchange:
        return agent, ActorKind.ON_BEHALF_OF
    return agent, ActorKind.USER_ACCOUNT if agent.identity_type == IdentityType.USER_ACCOUNT else ActorKind.AGENT


def _unauthenticated(request: TokenRequest, exchange: bool, reason: str, *, failed: bool = False) -> Outcome:
    """``invalid_client``, recorded against the agent whose client id was presented (if there is one)."""
    client_id = request.client_id[:64]
    agent, kind = _presented(client_id, exchange)
    caller = _Caller(client_id, agent.pk if agent else None, kind,
                     credential_type=CredentialType.SECRET if request.secret else "")
    return _refuse(request, caller, Refusal("invalid_client", reason=reason), failed=failed)


def _unverified(request: TokenRequest, exchange: bool, verified: assertions.Verified) -> Outcome:
    """A client assertion that did not verify (``invalid_client``) or a jwt-bearer grant whose assertion did not
    (``invalid_grant``): recorded against the agent whose client id was presented, with the reason (never the
    assertion) and the credential type and issuer it claimed."""
    client_id = (verified.client_id or request.client_id)[:64]
    agent, kind = _presented(client_id, exchange)
    error = verified.error or assertions.INVALID_CLIENT
    reason = verified.reason or "the agent has no client registration"
    caller = _Caller(client_id, agent.pk if agent else None, kind, credential_type=verified.credential_type,
                     credential_issuer=verified.issuer)
    return _refuse(request, caller, Refusal(error, reason=reason), failed=error == assertions.INVALID_CLIENT)


def _client_credentials(request: TokenRequest, client: tokens.AgentClient, caller: _Caller,
                        resource: resources.Resource, policy_version: int | None = None) -> Outcome:
    """RFC 6749 §4.4: the agent's own token, with what it asked for out of what it holds and the resource accepts."""
    agent = client.agent
    held = tokens.effective_scopes(agent, request.at)
    if caller.actor_kind == ActorKind.USER_ACCOUNT:  # never more than the user it runs as may do
        held = held.narrowed(tokens.user_rights(agent.run_as_user))
    asked = request.scopes
    foreign = sorted(set(asked or ()) - resource.accepts(asked or ()))
    if foreign:
        refusal = Refusal("invalid_scope", f"The resource does not accept {', '.join(foreign)}.",
                          ("not accepted by the resource: " + ", ".join(foreign))[:280])
        return _refuse(request, caller, refusal, requested=tuple(sorted(set(asked))))
    if resource.scopes is not None:
        held = held.narrowed(resource.scopes)
    wanted = sorted(set(asked)) if asked is not None else sorted(held.scopes)
    requested = tuple(wanted) if asked is not None else ()
    missing = sorted(set(wanted) - held.scopes)
    if missing:
        refusal = Refusal("invalid_scope", f"The agent does not hold {', '.join(missing)}.",
                          ("not held: " + ", ".join(missing))[:280])
        return _refuse(request, caller, refusal, requested=requested)
    if not wanted:
        return _refuse(request, caller, Refusal("invalid_scope", "The agent holds no scope this resource accepts.",
                                                "nothing held is accepted by the resource"), requested=requested)
    evaluation = _conditional_access(agent, request, wanted, policy_version, caller.credential_type)
    policies = tuple(evaluation.applied())
    if not evaluation.allowed:
        return _refuse(request, caller, _blocked(evaluation.blocked_by), requested=requested, policies=policies)
    return _issue(request, caller, wanted, held.valid_until(wanted), requested=requested, policies=policies,
                  resource=resource)


def _token_exchange(request: TokenRequest, client: tokens.AgentClient, caller: _Caller,
                    resource: resources.Resource, policy_version: int | None = None) -> Outcome:
    """RFC 8693: the agent presents a person's access token and gets one for that person, naming itself as the
    actor; scopes = requested ∩ the agent's delegated permissions ∩ the person's rights ∩ the subject token's."""
    if not request.subject_token or request.subject_token_type != ACCESS_TOKEN_TYPE:
        return _refuse(request, caller, Refusal("invalid_request", "subject_token of type access_token is required.",
                                                "subject_token and its access_token type are required"))
    subject_token = tokens.live_token(request.subject_token, request.at)
    if subject_token is None or subject_token.actor_kind != ActorKind.USER or subject_token.subject is None:
        return _refuse(request, caller, Refusal(
            "invalid_grant", "The subject token is not an active user's access token.",
            "subject token is not an active person's token"))
    person = subject_token.subject
    caller = _Caller(caller.client_id, caller.agent_id, caller.actor_kind, person.pk, caller.blueprint_id,
                     subject_token.claims["sub"], caller.credential_type, caller.credential_issuer)
    agent = client.agent
    held = tokens.effective_scopes(agent, request.at)
    allowed = resource.accepts(tokens.delegated_names(held.scopes) & tokens.user_rights(person)
                               & set(subject_token.scopes))
    asked = set(request.scopes or ())
    requested = tuple(sorted(asked))
    granted = sorted((asked or allowed) & allowed)
    if not granted:
        refusal = Refusal("invalid_scope", reason="nothing requested is both delegated and the user's")
        return _refuse(request, caller, refusal, requested=requested)
    evaluation = _conditional_access(agent, request, granted, policy_version, caller.credential_type)
    policies = tuple(evaluation.applied())
    if not evaluation.allowed:
        return _refuse(request, caller, _blocked(evaluation.blocked_by), requested=requested, policies=policies)
    ends = [end for end in (held.valid_until(granted), subject_token.expires_at) if end]
    return _issue(request, caller, granted, min(ends) if ends else None, requested=requested, policies=policies,
                  parent_id=subject_token.pk, resource=resource)


def _conditional_access(agent, request: TokenRequest, scopes, policy_version: int | None = None,
                        credential_type: str = "") -> conditional_access.Evaluation:
    """Every active policy's verdict for this agent, address, time and scopes (the policies are cached per process,
    current as of ``policy_version`` when the gate read it, and so is their evaluation for the same inputs; the
    agent's facts were read with its credential on PostgreSQL)."""
    policies = conditional_access.cached_active_policies(policy_version)
    facts = conditional_access.agent_facts(agent, policies)
    context = conditional_access.AccessContext(ip=request.ip, at=request.at, scopes=frozenset(scopes),
                                               resource=request.resource or resources.portal_identifier(),
                                               credential_type=credential_type)
    return conditional_access.evaluate_cached(facts, context, policies)


def _blocked(names: str) -> Refusal:
    return Refusal("invalid_grant", f"Blocked by conditional access policy: {names}.",
                   f"blocked by conditional access: {names}"[:300], blocked=True)


def _refuse(request: TokenRequest, caller: _Caller, refusal: Refusal, *, requested: tuple[str, ...] = (),
            policies: tuple[dict, ...] = (), failed: bool = False) -> Outcome:
    recorded = tokens.Issuance(
        at=request.at, client_id=caller.client_id, grant_type=request.grant_type, ip=request.ip,
        agent_id=caller.agent_id, actor_kind=caller.actor_kind, subject_id=caller.subject_id, requested=requested,
        outcome=SignInOutcome.BLOCKED if refusal.blocked else SignInOutcome.FAILURE, error=refusal.error,
        reason=refusal.reason, policies=policies, resource=request.resource,
        credential_type=caller.credential_type, credential_issuer=caller.credential_issuer)
    return Outcome(recorded, refusal=refusal, failed_authentication=failed)


def _issue(request: TokenRequest, caller: _Caller, granted: list[str], valid_until: datetime | None, *,
           requested: tuple[str, ...], policies: tuple[dict, ...], resource: resources.Resource,
           parent_id: int | None = None) -> Outcome:
    """A new token for ``granted``: it lives ``ACCESS_TOKEN_TTL``, cut to the earliest end of what granted them."""
    expires_at = tokens.token_expiry(request.at, valid_until)
    value, token_hash = tokens.mint(
        at=request.at, expires_at=expires_at, client_id=caller.client_id, audience=resource.identifier,
        scopes=granted, subject=caller.subject_sub, agent_id=caller.agent_id, blueprint_id=caller.blueprint_id,
        act={"sub": caller.client_id} if caller.actor_kind == ActorKind.ON_BEHALF_OF else None)
    recorded = tokens.Issuance(
        at=request.at, client_id=caller.client_id, grant_type=request.grant_type, ip=request.ip,
        agent_id=caller.agent_id, actor_kind=caller.actor_kind, subject_id=caller.subject_id, requested=requested,
        granted=tuple(granted), outcome=SignInOutcome.SUCCESS, policies=policies, token_hash=token_hash,
        expires_at=expires_at, parent_id=parent_id, resource=request.resource, audience=resource.identifier,
        credential_type=caller.credential_type, credential_issuer=caller.credential_issuer)
    return Outcome(recorded, access_token=value,
                   expires_in=max(1, int((expires_at - request.at).total_seconds())))
