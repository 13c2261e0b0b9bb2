"""Access tokens for agents: what a token may carry, storing it, validating and revoking it.

The token endpoint's service (``governance.signin.issuance``) asks this module who a client is
(``authenticate_client``), what it may hold now (``effective_scopes``, ``user_rights``, ``delegated_names``) and
whether a presented token is still good (``live_token``); resource servers ask ``introspect``. Every access token is
a JWT (RFC 9068, ``mint``) signed by ``governance.signing``: resource servers may verify it offline against the JWKS.
Its ``jti`` is random (256 bits) and only the jti's SHA-256 is stored (``token_hash``), like credentials; the row
is what revocation and the "inactive at the next introspection" guarantees act on.

Every issuance, refused or not, whether asked for at the token endpoint or made for a run, is written by one function,
``issuance_record``: the sign-in row and, when a token was issued, the token row with it, atomically (one prepared
statement on PostgreSQL, ``fastpath.record``; the ORM in a transaction elsewhere).

A token is active only while it is unexpired, unrevoked, its agent is active and unexpired, and the user it speaks
for (if any) is active: disabling an agent or a user makes its tokens inactive at the next introspection without
any job. Its lifetime never outlasts the earliest end of an assignment that contributed one of its scopes, so an
assignment's expiry also takes effect without a job; an assignment ended early revokes the tokens that carried it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import DEFERRED, Count, DateTimeField, Q, Value
from django.utils import timezone

from agents import credentials as credential_hashing
from agents.choices import AgentStatus, IdentityType
from agents.models import Agent, AgentIdentity, Credential, PermissionGrant
from governance.access.choices import AssignmentStatus
from governance.access.models import AccessPackage, Assignment
from governance.signin import fastpath, resource_servers, resources
from governance.signin.choices import ActorKind, GrantType, SignInOutcome
from governance.signin.models import AccessToken, ResourceServer, SignIn
from governance.signing import keys as signing
from portal import audit, changes, rbac
from portal.models import Permission, User

RS_SECRET_PREFIX = "aiprs_"


def hash_token(jti: str) -> str:
    """What is stored of a token: the SHA-256 of its ``jti``."""
    return hashlib.sha256(jti.encode()).hexdigest()


def mint(*, at: datetime, expires_at: datetime, client_id: str, audience: str, scopes: Iterable[str],
         subject: str | None = None, agent_id: int | None = None, blueprint_id: int | None = None,
         act: dict | None = None) -> tuple[str, str]:
    """A signed access token (RFC 9068) and the hash to store for it. ``subject`` is a person's opaque ``sub``
    (``User.oauth_subject``); without one the token is the client's own and its ``sub`` is the client id."""
    jti = signing.jti()
    claims = {"iss": settings.PORTAL_BASE_URL, "sub": subject or client_id, "aud": audience, "client_id": client_id,
              "scope": " ".join(scopes), "jti": jti, "iat": int(at.timestamp()), "exp": int(expires_at.timestamp())}
    if act is not None:
        claims["act"] = act  # RFC 8693 §4.1: who acts for the subject
    if agent_id is not None:
        claims["agent_id"] = agent_id
        claims["blueprint_id"] = blueprint_id
    return signing.sign(claims), hash_token(jti)


def claims_of(value: str) -> dict | None:
    """The verified claims of a token this portal signed (signature, issuer, expiry), or None. Whether it is still
    active is the row's to say (``live_token``, ``introspect``)."""
    if not value or len(value) > 4096 or not signing.looks_like_jwt(value):
        return None
    claims = signing.verify(value)
    if claims is None or not isinstance(claims.get("jti"), str):
        return None
    return claims


# --- who is calling ---------------------------------------------------------------------------------------------
@dataclass
class AgentClient:
    """The authenticated client of a token or revocation request."""

    client_id: str
    agent: Agent
    credential_id: int

    @property
    def actor_kind(self) -> str:
        return ActorKind.USER_ACCOUNT if self.agent.identity_type == IdentityType.USER_ACCOUNT else ActorKind.AGENT


def authenticate_client(client_id: str, secret: str, now: datetime | None = None) -> AgentClient | None:
    """The client whose unexpired, unrevoked credential this secret is, or None.

    The lookup is by the secret's keyed hash (an index probe that reveals nothing about near misses) and the client
    id is then compared in constant time, so a wrong secret and a wrong client id cost the same.
    """
    if not client_id or not secret:
        return None
    now = now or timezone.now()
    secret_hash = credential_hashing.hash_secret(secret)
    if fastpath.enabled():
        row = fastpath.authenticate(secret_hash, now)
    else:
        row = (Credential.objects.filter(secret_hash=secret_hash, revoked_at__isnull=True, expires_at__gt=now)
               .values_list("pk", "identity__client_id", *(f"identity__agent__{f}" for f in _AGENT_FIELDS),
                            "identity__agent__blueprint__publisher_kind", "identity__agent__run_as_user__username",
                            "identity__agent__run_as_user__is_active").order_by()[:1])
        row = row[0] if row else None
    if row is None or not hmac.compare_digest(row[1].encode(), client_id.encode()):
        return None
    return _client(row)


def authenticate_identity(client_id: str, now: datetime | None = None) -> AgentClient | None:
    """The client with this id, for a client that already proved itself with a key or a federated credential
    (``governance.signin.assertions``); ``credential_id`` is then its identity's id. The same row as
    ``authenticate_client`` reads, so issuance goes on exactly as for a secret."""
    if not client_id:
        return None
    now = now or timezone.now()
    if fastpath.enabled():
        row = fastpath.authenticate_identity(client_id, now)
    else:
        row = (AgentIdentity.objects.filter(client_id=client_id)
               .values_list("pk", "client_id", *(f"agent__{f}" for f in _AGENT_FIELDS),
                            "agent__blueprint__publisher_kind", "agent__run_as_user__username",
                            "agent__run_as_user__is_active").order_by()[:1])
        row = row[0] if row else None
    return None if row is None else _client(row)


def client_from_row(row: tuple) -> AgentClient:
    """The client from the row ``fastpath.authenticate_identity_with_rules`` read with a federated credential's
    rules (the same row as ``authenticate_identity``'s)."""
    return _client(row)


def _client(row: tuple) -> AgentClient:
    agent = Agent.from_db(None, None, [DEFERRED if at is None else row[at] for at in _AGENT_SLOTS])
    publisher_kind, username, user_active = row[2 + len(_AGENT_FIELDS):5 + len(_AGENT_FIELDS)]
    if len(row) > 5 + len(_AGENT_FIELDS):  # PostgreSQL read the permissions and policy facts in the same statement
        own, package_names, package_ends, attributes, has_agent_user = row[5 + len(_AGENT_FIELDS):]
        agent.prefetched_scope_rows = [(name, None) for name in own] + list(zip(package_names, package_ends,
                                                                                strict=True))
        agent.prefetched_attributes = dict(a.split("=", 1) for a in attributes)
        agent.prefetched_has_agent_user = has_agent_user
    agent.publisher_kind = publisher_kind  # read by conditional access without loading the blueprint
    if agent.run_as_user_id is not None:
        agent.run_as_user = User(pk=agent.run_as_user_id, username=username, is_active=user_active)
    return AgentClient(client_id=row[1], agent=agent, credential_id=row[0])


# The agent columns the token endpoint needs, read in the credential's query (no model joins instantiated).
_AGENT_FIELDS = fastpath.AGENT_COLUMNS
# Where each of the agent's columns is in that row (None: not read, left deferred), in the model's own order: the
# agent is built as a queryset builds one (``Model.from_db`` with every value in place), a quarter of the CPU of
# keyword arguments on every token request.
_AGENT_SLOTS = tuple(2 + _AGENT_FIELDS.index(f.attname) if f.attname in _AGENT_FIELDS else None
                     for f in Agent._meta.concrete_fields)


def agent_for_client_id(client_id: str) -> Agent | None:
    """The agent a client id belongs to (for the sign-in log of a failed attempt)."""
    return Agent.objects.filter(identity__client_id=client_id).first() if client_id else None


# --- what a token may carry ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entitlement:
    """The permission names an agent holds now; those that only an assignment gives end with it."""

    scopes: frozenset[str]
    ends: dict[str, datetime] = field(default_factory=dict)  # scope → the end of the assignment that gives it

    def narrowed(self, scopes: Iterable[str]) -> Entitlement:
        keep = frozenset(scopes) & self.scopes
        return Entitlement(keep, {s: e for s, e in self.ends.items() if s in keep})

    def valid_until(self, scopes: Iterable[str]) -> datetime | None:
        """When a token carrying ``scopes`` must end: the earliest end among them (None: no assignment scope)."""
        return min((self.ends[s] for s in scopes if s in self.ends), default=None)


def refusal(agent: Agent, now: datetime) -> str:
    """Why this agent may get no token now ("" when it may): its status, its expiry, or the user account it runs
    as being disabled."""
    if agent.status != AgentStatus.ACTIVE:
        return f"the agent is {agent.get_status_display().lower()}"
    if agent.is_expired(now):
        return "the agent has expired"
    if agent.identity_type == IdentityType.USER_ACCOUNT and not agent.run_as_user.is_active:
        return f"its user account {agent.run_as_user.username} is disabled"
    return ""


def effective_scopes(agent: Agent, now: datetime) -> Entitlement:
    """An agent's effective permissions: its own (blueprint grants for an agent identity, the blueprint's required
    permissions for a user-account agent) ∪ its active package assignments; never a privileged one, so no token
    carries one. On PostgreSQL the token endpoint has read them with the client (``fastpath.authenticate``);
    otherwise one query (a UNION)."""
    rows = getattr(agent, "prefetched_scope_rows", None)
    if rows is None:
        rows = _scope_rows(agent, now)
    own: set[str] = set()
    ends: dict[str, datetime] = {}
    for name, end in rows:
        if end is None:
            own.add(name)
        elif name not in ends or end > ends[name]:
            ends[name] = end  # the latest end among the assignments that give this permission
    return Entitlement(frozenset(own | set(ends)), {name: end for name, end in ends.items() if name not in own})


def _scope_rows(agent: Agent, now: datetime):
    if agent.identity_type == IdentityType.AGENT_IDENTITY:
        fixed = (PermissionGrant.objects.filter(identity__agent_id=agent.pk, ended_at__isnull=True,
                                                permission__privileged=False)
                 .values_list("permission__name", Value(None, output_field=DateTimeField())).order_by())
    else:
        fixed = (Permission.objects.filter(blueprints=agent.blueprint_id, privileged=False)
                 .values_list("name", Value(None, output_field=DateTimeField())).order_by())
    packaged = (Permission.objects.filter(access_packages__assignments__agent=agent,
                                          access_packages__assignments__status=AssignmentStatus.ACTIVE,
                                          access_packages__assignments__expires_at__gt=now, privileged=False)
                .values_list("name", "access_packages__assignments__expires_at").order_by())
    return fixed.union(packaged, all=True)


def user_rights(user: User) -> frozenset[str]:
    """The data rights a person holds through directory roles (none when disabled); platform roles give none, so
    an agent speaking for a person never gets more than that person may do."""
    if not user.is_active:
        return frozenset()
    return frozenset(Permission.objects.filter(roles__assignments__user=user, privileged=False)
                     .values_list("name", flat=True))


def delegated_names(names: Iterable[str]) -> frozenset[str]:
    """The names among ``names`` that exist as delegated permissions (what an agent may do for a person)."""
    return frozenset(Permission.objects.filter(name__in=list(names), kind="delegated", privileged=False)
                     .values_list("name", flat=True))


# --- recording issuance ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Issuance:
    """One token request as the sign-in log keeps it: who asked, for what, what was granted or why nothing was, and
    the conditional-access verdicts; with the token row's own facts (``token_hash`` set) when a token was issued."""

    at: datetime
    client_id: str
    grant_type: str
    outcome: str
    agent_id: int | None = None
    actor_kind: str = ActorKind.UNKNOWN
    subject_id: int | None = None
    ip: str | None = None
    requested: tuple[str, ...] = ()
    granted: tuple[str, ...] = ()
    error: str = ""
    reason: str = ""
    policies: tuple[dict, ...] = ()
    token_hash: str = field(default="", repr=False)
    expires_at: datetime | None = None
    parent_id: int | None = None  # the subject token a token exchange was granted on
    run_id: int | None = None
    resource: str = ""  # the resource asked for (empty: none named, the portal API)
    audience: str = ""  # the audience of the issued token
    family: str = ""  # the authorization (code, refresh tokens) the token came from
    credential_type: str = ""  # how the client authenticated (agents.choices.CredentialType), if it tried
    credential_issuer: str = ""  # the issuer of a federated credential's token


def issuance_record(issuance: Issuance) -> int | None:
    """Write an issuance's sign-in row and, when a token was issued, the token row with it, atomically; return the
    token's id (None when none was issued).

    The one writer of sign-in rows and of agents' token rows (the token endpoint's and runs'). On PostgreSQL it is a
    single prepared statement (``fastpath.record``), atomic without a transaction; elsewhere the ORM in a
    transaction (a savepoint inside the caller's)."""
    sign_in = {"at": issuance.at, "agent_id": issuance.agent_id, "client_id": issuance.client_id[:64],
               "actor_kind": issuance.actor_kind, "subject_id": issuance.subject_id, "ip": issuance.ip,
               "grant_type": issuance.grant_type[:60], "requested_scopes": list(issuance.requested),
               "granted_scopes": list(issuance.granted), "outcome": issuance.outcome, "error": issuance.error,
               "reason": issuance.reason[:300], "policies": list(issuance.policies),
               "resource": issuance.resource[:300], "credential_type": issuance.credential_type,
               "credential_issuer": issuance.credential_issuer[:255]}
    token = None
    if issuance.token_hash:
        token = {"token_hash": issuance.token_hash, "agent_id": issuance.agent_id, "client_id": sign_in["client_id"],
                 "subject_id": issuance.subject_id, "actor_kind": issuance.actor_kind,
                 "grant_type": issuance.grant_type, "scopes": sign_in["granted_scopes"],
                 "parent_id": issuance.parent_id, "run_id": issuance.run_id, "issued_at": issuance.at,
                 "expires_at": issuance.expires_at, "revoked_reason": "", "audience": issuance.audience,
                 "family": issuance.family}
    if fastpath.enabled():
        return fastpath.record(sign_in, token)
    with transaction.atomic():
        token_id = AccessToken.objects.create(**token).pk if token is not None else None
        SignIn.objects.create(**sign_in, token_id=token_id)
    return token_id


# --- storing and validating ---------------------------------------------------------------------------------------
def token_expiry(now: datetime, valid_until: datetime | None) -> datetime:
    natural = now + timedelta(seconds=settings.ACCESS_TOKEN_TTL)
    return min(natural, valid_until) if valid_until else natural


_LIVE_TOKEN_FIELDS = (
    "id", "agent_id", "client_id", "subject_id", "actor_kind", "grant_type", "scopes", "issued_at", "expires_at",
    "revoked_at", *(f"agent__{f}" for f in ("id", "workspace_id", "name", "identity_type", "run_as_user_id",
                                             "status", "expires_at")),
    "agent__run_as_user__id", "agent__run_as_user__username", "agent__run_as_user__is_active",
    "audience", "subject__id", "subject__username", "subject__is_active", "subject__oauth_subject", "last_used_at")

#: A token's use is noted at most once per this many seconds (docs/design.md, "Usage").
USE_MARK_SECONDS = 60


def mark_used(token_id: int, last_used_at: datetime | None, now: datetime) -> None:
    """Note that a token was used (docs/design.md, "Usage"): introspected as active by a resource server, or
    presented at the portal API. Nothing when it was noted less than ``USE_MARK_SECONDS`` ago (no query at all),
    else one UPDATE that a concurrent request's mark makes a no-op."""
    stale_before = now - timedelta(seconds=USE_MARK_SECONDS)
    if last_used_at is not None and last_used_at >= stale_before:
        return
    if fastpath.enabled():
        fastpath.mark_used(token_id, now, stale_before)
    else:
        AccessToken.objects.filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale_before),
                                   pk=token_id).update(last_used_at=now)


def live_token(value: str, now: datetime | None = None, *, use: bool = False) -> AccessToken | None:
    """The token with this value if it is active now (signature checked, then one query), else None. Its verified
    claims are on ``token.claims``. With ``use`` (introspection, the portal API) an active token's use is noted
    (``mark_used``)."""
    claims = claims_of(value)
    if claims is None:
        return None
    now = now or timezone.now()
    token = (AccessToken.objects.filter(token_hash=hash_token(claims["jti"]), revoked_at__isnull=True,
                                        expires_at__gt=now)
             .select_related("agent__run_as_user", "subject")
             .only(*_LIVE_TOKEN_FIELDS).order_by()[:1])
    token = token[0] if token else None
    if token is None or (token.agent is not None and refusal(token.agent, now)):
        return None
    if token.subject is not None and not token.subject.is_active:
        return None
    token.claims = claims
    if use:
        mark_used(token.pk, token.last_used_at, now)
    return token


def introspect(value: str, now: datetime | None = None) -> dict:
    """RFC 7662: the claims of an active token, or ``{"active": False}`` for an unknown, expired or revoked one."""
    now = now or timezone.now()
    if fastpath.enabled():
        return _introspect_row(value, now)
    token = live_token(value, now, use=True)
    if token is None:
        return {"active": False}
    return _introspection(token.claims, token.actor_kind, token.subject.username if token.subject else None)


def _introspection(claims: dict, actor_kind: str, username: str | None) -> dict:
    """RFC 7662's answer for an active token: the token's own claims, with ``username`` for a person's."""
    answer = {"active": True, "token_type": "Bearer", **claims, "actor_kind": actor_kind}
    if username is not None:
        answer["username"] = username
    return answer


@transaction.atomic
def personal_token_issue(*, actor: User, scopes: Iterable[str] | None = None) -> tuple[AccessToken, str]:
    """A signed-in person gets a short-lived token of their own rights, to hand to an agent for token exchange.
    The value is returned once; only its hash is kept. (No sign-in row: this is a person's portal session handing
    out a token, not a client's token request.)"""
    if actor is None or not actor.is_authenticated or not actor.is_active or actor.kind != "human":
        raise PermissionDenied("Only a signed-in person gets a personal token.")
    rights = user_rights(actor)
    wanted = set(scopes) if scopes else set(rights)
    missing = sorted(wanted - rights)
    if missing:
        raise ValidationError({"scopes": f"You do not hold {', '.join(missing)}."})
    if not wanted:
        raise ValidationError({"scopes": "You hold no data rights to delegate."})
    now = timezone.now()
    expires_at = token_expiry(now, None)
    audience = resources.portal_identifier()
    value, token_hash = mint(at=now, expires_at=expires_at, client_id="portal", audience=audience,
                             scopes=sorted(wanted), subject=str(actor.oauth_subject))
    token = AccessToken.objects.create(token_hash=token_hash, agent=None, client_id="portal", subject=actor,
                                       actor_kind=ActorKind.USER, grant_type=GrantType.PORTAL, scopes=sorted(wanted),
                                       issued_at=now, expires_at=expires_at, audience=audience)
    audit.record(actor=actor, action="token.issue_personal", target=token,
                 after={"token_id": token.pk, "scopes": token.scopes, "expires_at": token.expires_at})
    return token, value


def _run_client_id(agent: Agent) -> str:
    """The client id a run's sign-in carries: the agent's, or a stand-in for an agent without a client registration
    (a user-account agent that never got a secret)."""
    identity = AgentIdentity.objects.filter(agent=agent).only("client_id").first()
    return identity.client_id if identity else f"run-of-agent-{agent.pk}"


def run_token_issue(run, *, expires_at: datetime, now: datetime | None = None) -> tuple[AccessToken, str]:
    """The access token a run reads the portal API with (and an external executor calls back with): the run's
    scopes, speaking for the person whose rights bound it (a delegated run) or the agent's user account, never
    outliving the run's deadline or an assignment that gave one of its scopes. Recorded in the sign-in log like any
    issuance (``issuance_record``), so the risk job sees it; inside the caller's transaction and audit event."""
    now = now or timezone.now()
    agent = run.agent
    if run.delegated_for_id is not None:
        subject, kind = run.delegated_for, ActorKind.ON_BEHALF_OF
    elif agent.identity_type == IdentityType.USER_ACCOUNT:
        subject, kind = agent.run_as_user, ActorKind.USER_ACCOUNT
    else:
        subject, kind = None, ActorKind.AGENT
    valid_until = effective_scopes(agent, now).valid_until(run.scopes)
    client_id = _run_client_id(agent)
    expires_at = min(expires_at, valid_until) if valid_until else expires_at
    audience = resources.portal_identifier()
    value, token_hash = mint(
        at=now, expires_at=expires_at, client_id=client_id, audience=audience, scopes=run.scopes,
        subject=str(subject.oauth_subject) if subject else None, agent_id=agent.pk, blueprint_id=agent.blueprint_id,
        act={"sub": client_id} if kind == ActorKind.ON_BEHALF_OF else None)
    issuance = Issuance(
        at=now, agent_id=agent.pk, client_id=client_id, actor_kind=kind,
        subject_id=subject.pk if subject else None, grant_type=GrantType.RUN, requested=tuple(run.scopes),
        granted=tuple(run.scopes), outcome=SignInOutcome.SUCCESS, reason=f"run #{run.pk}",
        policies=tuple(run.policies), token_hash=token_hash, run_id=run.pk, expires_at=expires_at,
        audience=audience)
    token = AccessToken(pk=issuance_record(issuance), token_hash=issuance.token_hash, agent=agent,
                        client_id=issuance.client_id, subject=subject, actor_kind=kind, grant_type=GrantType.RUN,
                        scopes=list(run.scopes), issued_at=now, run=run, expires_at=issuance.expires_at,
                        audience=audience, last_used_at=now)
    # A permission asked for in a run is used (docs/design.md, "Usage"): the run's token is marked at issue.
    AccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token, value


def run_token_refuse(run, reason: str, now: datetime | None = None) -> None:
    """A run refused at its start is a refused sign-in too (the sign-in log shows every attempt)."""
    agent = run.agent
    blocked = reason.startswith("blocked by conditional access")
    issuance_record(Issuance(
        at=now or timezone.now(), agent_id=agent.pk, client_id=_run_client_id(agent),
        actor_kind=ActorKind.ON_BEHALF_OF if run.delegated_for_id else ActorKind.AGENT,
        subject_id=run.delegated_for_id, grant_type=GrantType.RUN, requested=tuple(run.scopes),
        outcome=SignInOutcome.BLOCKED if blocked else SignInOutcome.FAILURE, error="access_denied", reason=reason,
        policies=tuple(run.policies)))


def revoke_run_tokens(run, reason: str, now: datetime | None = None) -> int:
    """End the tokens of a run that finished, failed, timed out or was cancelled."""
    return _revoke(AccessToken.objects.filter(agent_id=run.agent_id, run=run), reason, now or timezone.now())


def _introspect_row(value: str, now: datetime) -> dict:
    """``introspect`` on PostgreSQL: one prepared statement, no model instances."""
    claims = claims_of(value)
    row = fastpath.live(hash_token(claims["jti"]), now) if claims is not None else None
    if row is None:
        return {"active": False}
    (pk, agent_id, client_id, actor_kind, scopes, issued_at, expires_at, status, agent_expires, identity_type,
     run_as_active, subject_name, subject_active, last_used_at) = row
    if isinstance(scopes, str):  # Django has psycopg hand jsonb over as text
        scopes = json.loads(scopes)
    if agent_id is not None and (status != AgentStatus.ACTIVE or (agent_expires is not None and agent_expires <= now)
                                 or (identity_type == IdentityType.USER_ACCOUNT and not run_as_active)):
        return {"active": False}
    if subject_name is not None and not subject_active:
        return {"active": False}
    mark_used(pk, last_used_at, now)
    return _introspection(claims, actor_kind, subject_name)


# --- revoking ---------------------------------------------------------------------------------------------------
def _revoke(queryset, reason: str, now: datetime) -> int:
    return queryset.filter(revoked_at__isnull=True, expires_at__gt=now).update(revoked_at=now,
                                                                               revoked_reason=reason[:60])


@transaction.atomic
def token_revoke(*, client: AgentClient, value: str) -> bool:
    """RFC 7009: a client revokes one of its own tokens (another client's token is left alone, silently)."""
    now = timezone.now()
    claims = claims_of(value)
    if claims is None:
        return False
    token = AccessToken.objects.filter(token_hash=hash_token(claims["jti"]), agent=client.agent).first()
    if token is None or token.revoked_at is not None or token.expires_at <= now:
        return False
    _revoke(AccessToken.objects.filter(pk=token.pk), "revoked by the client", now)
    audit.record(actor=None, action="token.revoke", target=client.agent, workspace=client.agent.workspace,
                 after={"token_id": token.pk, "by": "client"})
    return True


def revoke_agent_tokens(agent: Agent, reason: str, now: datetime | None = None) -> int:
    """Revoke every live token of an agent (inside the caller's transaction and audit event)."""
    return _revoke(AccessToken.objects.filter(agent=agent), reason, now or timezone.now())


def revoke_tokens_carrying(assignments: Iterable[Assignment], reason: str) -> int:
    """Revoke the live tokens that carry a permission of these (just ended) assignments: three queries."""
    now = timezone.now()
    doomed = tokens_carrying(assignments, now)
    return _revoke(AccessToken.objects.filter(pk__in=doomed), reason, now) if doomed else 0


def tokens_carrying(assignments: Iterable[Assignment], now: datetime) -> list[int]:
    """The ids of the live tokens that carry a permission of these assignments: what ending them revokes, read by
    the revocation and by its blast-radius preview alike (docs/blast-radius.md). Two queries."""
    assignments = list(assignments)
    if not assignments:
        return []
    through = AccessPackage.permissions.through
    names_of_package: dict[int, set[str]] = {}
    for package_id, name in through.objects.filter(accesspackage_id__in={a.package_id for a in assignments}) \
            .values_list("accesspackage_id", "permission__name"):
        names_of_package.setdefault(package_id, set()).add(name)
    names_by_agent: dict[int, set[str]] = {}
    for assignment in assignments:
        names_by_agent.setdefault(assignment.agent_id, set()).update(names_of_package.get(assignment.package_id, ()))
    live = AccessToken.objects.filter(agent_id__in=list(names_by_agent), revoked_at__isnull=True, expires_at__gt=now)
    return [t.pk for t in live.only("pk", "agent_id", "scopes") if names_by_agent[t.agent_id] & set(t.scopes)]


def revoke_for_disabled_agent(agent: Agent) -> None:
    revoke_agent_tokens(agent, f"agent {agent.status}")


def live_tokens_signed_in(windows, now: datetime) -> dict[int, int]:
    """For signing-key rotation (docs/oauth.md, "Signing keys"): per ``(key_id, start, end)`` window, the token
    rows, revoked or not, issued in it and not yet expired (``end`` None: still signing). One query."""
    if not windows:
        return {}
    counts = {f"k{key_id}": Count("pk", filter=Q(issued_at__gte=start) if end is None else
                                  Q(issued_at__gte=start, issued_at__lte=end))
              for key_id, start, end in windows}
    row = AccessToken.objects.filter(expires_at__gt=now).aggregate(**counts)
    return {int(name[1:]): count for name, count in row.items()}


# --- resource servers ---------------------------------------------------------------------------------------------
def can_manage_resource_servers(user) -> bool:
    return bool(rbac.role_keys(user) & {rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR})


RESOURCE_SERVER_CHANGE = "signin.resource_server"


def resource_server_create(*, actor: User | None, name: str, identifier: str | None = None, scopes=(),
                           break_glass: bool = False,
                           justification: str = "") -> tuple[ResourceServer, str] | changes.ChangeRequest:
    """Register a resource server (``_resource_server_create_now``). A high-impact change (R31;
    docs/four-eyes.md): a person's request waits for a second administrator unless ``break_glass`` (the pending
    request is returned); the approver is shown the secret once. The command (the system) registers at once."""
    scope_list = scopes.split() if isinstance(scopes, str) else list(scopes or ())
    return changes.gate(actor=actor, kind=RESOURCE_SERVER_CHANGE, break_glass=break_glass,
                        justification=justification,
                        payload={"name": name, "identifier": identifier, "scopes": scope_list})


def _apply_resource_server(*, actor: User | None, payload: dict) -> tuple[ResourceServer, str]:
    return _resource_server_create_now(actor=actor, name=payload["name"], identifier=payload["identifier"],
                                       scopes=payload["scopes"])


changes.register(RESOURCE_SERVER_CHANGE, label="Register a resource server", apply=_apply_resource_server,
                 describe=lambda p: f"{p['name']} ({p['identifier'] or 'introspection only'})",
                 outcome=lambda created: f"{created[0].name} registered with client id {created[0].client_id}.",
                 shown_once=lambda created: created[1])


@transaction.atomic
def _resource_server_create_now(*, actor: User | None, name: str, identifier: str | None = None,
                                scopes=()) -> tuple[ResourceServer, str]:
    """Register a resource server that may introspect tokens; its secret is returned once. With an ``identifier``
    it is also a resource tokens are issued for (R26), accepting ``scopes``, which join the catalog
    (``resource_servers.register``; docs/oauth.md, "Resource indicators")."""
    if actor is not None and not can_manage_resource_servers(actor):
        raise PermissionDenied("Only Global and Security Administrators register resource servers.")
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": "Give the resource server a name."})
    if ResourceServer.objects.filter(name__iexact=name).exists():
        raise ValidationError({"name": f"A resource server named {name} exists already."})
    target = resource_servers.register(actor=actor, name=name, identifier=identifier, scopes=scopes)
    secret = RS_SECRET_PREFIX + secrets.token_urlsafe(32)
    server = ResourceServer.objects.create(name=name, client_id="rs-" + secrets.token_hex(12),
                                           secret_hash=credential_hashing.hash_secret(secret), created_by=actor,
                                           **target)
    audit.record(actor=actor, action="resource_server.create", target=server,
                 after={"name": server.name, "client_id": server.client_id, **target})
    resource_servers.changed()
    return server, secret


@transaction.atomic
def resource_server_revoke(*, actor: User | None, server: ResourceServer) -> ResourceServer:
    if actor is not None and not can_manage_resource_servers(actor):
        raise PermissionDenied("Only Global and Security Administrators revoke resource servers.")
    server = ResourceServer.objects.select_for_update().get(pk=server.pk)
    if server.revoked_at is None:
        server.revoked_at = timezone.now()
        server.save(update_fields=["revoked_at"])
        audit.record(actor=actor, action="resource_server.revoke", target=server, after={"name": server.name})
        resource_servers.changed()
    return server


def authenticate_resource_server(client_id: str, secret: str) -> ResourceServer | None:
    if not client_id or not secret:
        return None
    secret_hash = credential_hashing.hash_secret(secret)
    if fastpath.enabled():
        row = fastpath.resource_server(secret_hash)
        server = ResourceServer(pk=row[0], client_id=row[1]) if row else None
    else:
        server = ResourceServer.objects.filter(secret_hash=secret_hash, revoked_at__isnull=True) \
            .only("id", "client_id").order_by().first()
    if server is None or not hmac.compare_digest(server.client_id.encode(), client_id.encode()):
        return None
    return server
