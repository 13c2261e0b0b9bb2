"""Agents without stored secrets (R28): key credentials and federated credentials, and their services.

A key credential is an agent's public key (a JWK, a PEM, or a ``jwks_uri`` on an allowed host): the agent signs its
own client assertions (``private_key_jwt``, RFC 7523 §2.2) and the portal keeps nothing secret. A federated
credential is a trust rule: a token from ``issuer`` whose subject and audience match authenticates the agent
(workload identity federation). Keys expire and rotate with overlap: adding a key ends none of the others. A rule on
a blueprint is a default trusted for every agent of that blueprint; those, and any rule whose subject is a pattern,
are for Global and Security Administrators only (docs/oauth.md, "Agents without secrets").

The URL rules for what the portal fetches (an issuer's discovery document and JWKS, a key credential's
``jwks_uri``) live here too, so that the verifier in ``governance.signin.assertions`` applies the same ones.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import credentials, policy, signals
from agents.choices import AgentStatus, CredentialType, IdentityType
from agents.models import Agent, AgentIdentity, Blueprint, Credential, FederatedCredential, KeyCredential
from portal import audit, rbac
from portal.choices import UserKind
from portal.models import User
from portal.network import is_loopback_host

ADMIN_ROLES = frozenset({rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR})
MIN_RSA_BITS = 2048
EC_CURVES = {"P-256", "P-384", "P-521"}
OKP_CURVES = {"Ed25519"}
#: RFC 7638 §3.2: the members a thumbprint covers, per key type; they are also all the public members kept.
REQUIRED_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
KID_RE = re.compile(r"^[\x21-\x7e]{1,64}$")
TEXT_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
MAX_KEY_INPUT = 16 * 1024


def key_lifetime() -> timedelta:
    return timedelta(days=settings.KEY_CREDENTIAL_DAYS)


# --- URL rules for fetches ---------------------------------------------------------------------------------------


def fetch_url_problem(url: str, *, allowed_hosts: list[str] | tuple[str, ...] = ()) -> str:
    """Why the portal will not fetch ``url`` (empty: it will): https only (plain http only on loopback hosts when
    ``OAUTH_ALLOW_LOOPBACK_HTTP``), no credentials or fragment, a host from ``allowed_hosts`` when that is set,
    and never a literal private or reserved address that is not listed."""
    if not isinstance(url, str) or not url or len(url) > 255 or not TEXT_RE.match(url):
        return "not a URL of at most 255 printable characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError
    except ValueError:
        return "not a valid URL"
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or parts.fragment or "#" in url:
        return "a URL with a host and no credentials or fragment is needed"
    if parts.scheme == "http":
        if not (is_loopback_host(host) and settings.OAUTH_ALLOW_LOOPBACK_HTTP):
            return "only https URLs are accepted"
    elif parts.scheme != "https":
        return "only https URLs are accepted"
    allowed = [h.strip().lower() for h in allowed_hosts if h.strip()]
    listed = host in allowed or parts.netloc.lower() in allowed
    if allowed and not listed:
        return f"{host[:100]} is not an allowed host"
    if not listed:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return ""
        if address.is_loopback:
            return "" if settings.OAUTH_ALLOW_LOOPBACK_HTTP else "an internal address is not fetched"
        if address.is_private or address.is_link_local or address.is_reserved or address.is_multicast \
                or address.is_unspecified:
            return "an internal address is not fetched"
    return ""


# --- keys -----------------------------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 of the required members in lexicographic order, no whitespace; base64url (43 chars)."""
    members = {name: jwk[name] for name in REQUIRED_MEMBERS[jwk["kty"]]}
    return _b64url(hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest())


def _check_public_jwk(raw: object) -> dict:
    """The public members of a JWK, checked: a supported key type and curve, RSA of at least 2048 bits; a private
    key is refused (its private members would be stored otherwise)."""
    if not isinstance(raw, dict):
        raise ValidationError("A JWK is a JSON object.")
    if "keys" in raw:
        raise ValidationError("Give one key (a JWK), not a key set.")
    if PRIVATE_MEMBERS & set(raw):
        raise ValidationError("This is a private key. Register the public key only; the private key never leaves "
                              "the agent.")
    kty = raw.get("kty")
    if kty not in REQUIRED_MEMBERS:
        raise ValidationError("The key type must be RSA, EC or OKP (Ed25519).")
    for name in REQUIRED_MEMBERS[kty]:
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise ValidationError(f"The JWK has no '{name}'.")
    public = {name: raw[name] for name in REQUIRED_MEMBERS[kty]}
    try:
        if kty == "RSA":
            if len(_b64url_decode(public["n"]).lstrip(b"\0")) * 8 < MIN_RSA_BITS:
                raise ValidationError(f"An RSA key has at least {MIN_RSA_BITS} bits.")
        elif kty == "EC" and public["crv"] not in EC_CURVES:
            raise ValidationError("An EC key is on P-256, P-384 or P-521.")
        elif kty == "OKP" and public["crv"] not in OKP_CURVES:
            raise ValidationError("An OKP key is Ed25519.")
        _load(public)  # proves the numbers make a key (a point on the curve, …)
    except (ValueError, TypeError) as exc:
        raise ValidationError("The JWK is not a valid public key.") from exc
    kid = raw.get("kid")
    if kid is not None:
        if not isinstance(kid, str) or not KID_RE.match(kid):
            raise ValidationError("A key id (kid) is 1 to 64 printable characters.")
        public["kid"] = kid
    for name in ("alg", "use"):
        if isinstance(raw.get(name), str) and TEXT_RE.match(raw[name]):
            public[name] = raw[name]
    return public


def _load(jwk: dict):
    """A cryptography public key from a (public) JWK."""
    import jwt

    return jwt.PyJWK.from_dict(dict(jwk)).key


def jwk_from_pem(pem: str) -> dict:
    """The JWK of a PEM public key (or of a certificate's key); a PEM private key is refused."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    if "PRIVATE KEY" in pem:
        raise ValidationError("This is a private key. Register the public key only; the private key never leaves "
                              "the agent.")
    data = pem.strip().encode()
    try:
        if b"BEGIN CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValidationError("The PEM is not a public key or certificate.") from exc
    if isinstance(key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(key, as_dict=True)
    else:
        raise ValidationError("The key type must be RSA, EC or Ed25519.")
    return jwk


def parse_public_key(text: str) -> dict:
    """A public JWK from what a person uploaded or pasted: a JWK (JSON) or a PEM."""
    if not isinstance(text, str) or not text.strip():
        raise ValidationError("Give a public key: a JWK (JSON) or a PEM.")
    if len(text) > MAX_KEY_INPUT:
        raise ValidationError("A public key is at most 16 KiB.")
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        return _check_public_jwk(jwk_from_pem(stripped))
    try:
        raw = json.loads(stripped)
    except ValueError as exc:
        raise ValidationError("The key is neither a JWK (JSON) nor a PEM.") from exc
    return _check_public_jwk(raw)


def identity_for_management(actor: User | None, agent: Agent, *, register: bool = False) -> AgentIdentity:
    """The agent's client registration, for managing its credentials (secrets, keys, federated credentials): its
    owners and the workspace's owners manage it; a retired agent gets nothing new. A user-account agent (R1) has
    none until its first credential (``register``): it then gets a client id to request tokens with, but no
    permissions and no agent user of its own (its tokens carry its user's rights, R13)."""
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners manage its credentials.")
    if agent.status == AgentStatus.RETIRED:
        raise ValidationError("A retired agent gets no new credentials.")
    identity = AgentIdentity.objects.filter(agent=agent).first()
    if identity is None and register and agent.identity_type == IdentityType.USER_ACCOUNT:
        identity = AgentIdentity.objects.create(agent=agent, client_id=credentials.new_client_id())
    if identity is None:
        raise ValidationError("This agent has no client registration yet.")
    return identity


def _lock(agent: Agent) -> Agent:
    return Agent.objects.select_for_update(of=("self",)).select_related("workspace").get(pk=agent.pk)


@transaction.atomic
def key_credential_add(*, actor: User | None, agent: Agent, jwk: dict | str | None = None, pem: str | None = None,
                       jwks_uri: str = "", expires_at: datetime | None = None) -> KeyCredential:
    """Register a public key (or a ``jwks_uri``) the agent signs client assertions with. The agent's owners and
    the workspace's owners (inherited owners too) may; the key expires after ``KEY_CREDENTIAL_DAYS`` unless an
    earlier ``expires_at`` is given; other keys stay valid (rotation with overlap)."""
    agent = _lock(agent)
    identity = identity_for_management(actor, agent, register=True)
    now = timezone.now()
    given = [x for x in (jwk, pem, jwks_uri) if x]
    if len(given) != 1:
        raise ValidationError("Give exactly one of a JWK, a PEM or a jwks_uri.")
    if jwks_uri:
        problem = fetch_url_problem(jwks_uri, allowed_hosts=settings.OAUTH_KEY_JWKS_ALLOWED_HOSTS)
        if problem:
            raise ValidationError({"jwks_uri": f"The jwks_uri is refused: {problem}."})
        public, print_ = None, _b64url(hashlib.sha256(jwks_uri.encode()).digest())
        kid = "*"
    else:
        public = parse_public_key(pem) if pem else (
            _check_public_jwk(jwk) if isinstance(jwk, dict) else parse_public_key(jwk))
        print_ = thumbprint(public)
        kid = public.get("kid") or print_
    latest = now + key_lifetime()
    if expires_at is None:
        expires_at = latest
    if expires_at <= now:
        raise ValidationError({"expires_at": "A key's expiry is in the future."})
    if expires_at > latest:
        raise ValidationError({"expires_at": f"A key lives at most {settings.KEY_CREDENTIAL_DAYS} days."})
    if KeyCredential.objects.filter(identity=identity, thumbprint=print_).exists():
        raise ValidationError("This key is already registered for this agent.")
    credential = KeyCredential.objects.create(identity=identity, kid=kid, public_jwk=public, jwks_uri=jwks_uri,
                                              thumbprint=print_, created_at=now, created_by=actor,
                                              expires_at=expires_at)
    audit.record(actor=actor, action="agent.key_credential_add", target=agent, workspace=agent.workspace,
                 after={"key_credential_id": credential.pk, "kid": kid, "thumbprint": print_,
                        "jwks_uri": jwks_uri, "expires_at": expires_at})
    return credential


@transaction.atomic
def key_credential_revoke(*, actor: User | None, credential: KeyCredential) -> KeyCredential:
    agent = _lock(credential.identity.agent)
    if actor is not None and not policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners and the workspace's owners manage its credentials.")
    credential = KeyCredential.objects.select_for_update().get(pk=credential.pk)
    if credential.revoked_at is not None:
        return credential
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["revoked_at"])
    audit.record(actor=actor, action="agent.key_credential_revoke", target=agent, workspace=agent.workspace,
                 after={"key_credential_id": credential.pk, "kid": credential.kid,
                        "thumbprint": credential.thumbprint})
    signals.credential_revoked.send(sender=KeyCredential, agent=agent, credential=credential)
    return credential


# --- federated credentials -------------------------------------------------------------------------------------


def is_trust_administrator(user: User | None) -> bool:
    """Global and Security Administrators (people): they alone set blueprint defaults and subject patterns."""
    return user is not None and bool(rbac.role_keys(user) & ADMIN_ROLES) \
        and getattr(user, "kind", None) == UserKind.HUMAN


def check_rule(issuer: str, subject: str, audience: str, subject_is_pattern: bool, name: str) -> None:
    errors = {}
    problem = fetch_url_problem(issuer)
    if problem:
        errors["issuer"] = f"The issuer is refused: {problem}."
    elif urlsplit(issuer).query:
        errors["issuer"] = "An issuer has no query."
    if not isinstance(subject, str) or not TEXT_RE.match(subject):
        errors["subject"] = "A subject is 1 to 255 printable characters."
    elif subject_is_pattern and not subject.replace("*", "").replace("?", ""):
        errors["subject"] = "A pattern must name something besides wildcards."
    if not isinstance(audience, str) or not TEXT_RE.match(audience):
        errors["audience"] = "An audience is 1 to 255 printable characters."
    if name and (len(name) > 120 or not TEXT_RE.match(name)):
        errors["name"] = "A name is at most 120 printable characters."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def federated_credential_add(*, actor: User | None, agent: Agent | None = None, blueprint: Blueprint | None = None,
                             issuer: str, subject: str, audience: str, subject_is_pattern: bool = False,
                             name: str = "") -> FederatedCredential:
    """Trust tokens from ``issuer`` for ``subject`` (exact, or a ``*`` pattern) and ``audience`` to authenticate
    the agent (or, as a blueprint default, every agent of the blueprint). Owners add rules to their agents;
    blueprint defaults and patterns are for Global and Security Administrators."""
    if (agent is None) == (blueprint is None):
        raise ValidationError("A federated credential belongs to an agent or to a blueprint.")
    if (blueprint is not None or subject_is_pattern) and actor is not None and not is_trust_administrator(actor):
        raise PermissionDenied("Only Global and Security Administrators add blueprint defaults or subject "
                               "patterns.")
    workspace = None
    if agent is not None:
        agent = _lock(agent)
        identity_for_management(actor, agent, register=True)
        workspace = agent.workspace
    check_rule(issuer, subject, audience, subject_is_pattern, name)
    owner = Q(agent=agent) if agent is not None else Q(blueprint=blueprint)
    if FederatedCredential.objects.filter(owner, issuer=issuer, subject=subject, audience=audience,
                                          revoked_at__isnull=True).exists():
        raise ValidationError("The same rule is already trusted.")
    credential = FederatedCredential.objects.create(
        agent=agent, blueprint=blueprint, name=name, issuer=issuer, subject=subject,
        subject_is_pattern=subject_is_pattern, audience=audience, created_by=actor)
    audit.record(actor=actor, action="agent.federated_credential_add", target=agent or blueprint,
                 workspace=workspace,
                 after={"federated_credential_id": credential.pk, "issuer": issuer, "subject": subject,
                        "subject_is_pattern": subject_is_pattern, "audience": audience, "name": name})
    return credential


@transaction.atomic
def federated_credential_revoke(*, actor: User | None, credential: FederatedCredential) -> FederatedCredential:
    credential = FederatedCredential.objects.select_for_update().get(pk=credential.pk)
    if credential.agent_id is not None:
        agent = _lock(credential.agent)
        if actor is not None and not policy.can_manage_agent(actor, agent):
            raise PermissionDenied("Only the agent's owners and the workspace's owners manage its credentials.")
        target, workspace = agent, agent.workspace
    else:
        if actor is not None and not is_trust_administrator(actor):
            raise PermissionDenied("Only Global and Security Administrators remove blueprint defaults.")
        target, workspace = credential.blueprint, None
    if credential.revoked_at is not None:
        return credential
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["revoked_at"])
    audit.record(actor=actor, action="agent.federated_credential_revoke", target=target, workspace=workspace,
                 after={"federated_credential_id": credential.pk, "issuer": credential.issuer,
                        "subject": credential.subject})
    if credential.agent_id is not None:
        signals.credential_revoked.send(sender=FederatedCredential, agent=target, credential=credential)
    return credential


def revoke_for_retirement(agent: Agent, now: datetime) -> dict[str, int]:
    """R5 with R28: retirement leaves no credential behind (called inside ``agent_retire``'s transaction)."""
    return {
        "key_credentials_revoked": KeyCredential.objects.filter(identity__agent=agent, revoked_at__isnull=True)
        .update(revoked_at=now),
        "federated_credentials_revoked": FederatedCredential.objects.filter(agent=agent, revoked_at__isnull=True)
        .update(revoked_at=now),
    }


def retirement_preview(agent: Agent, now: datetime | None = None) -> dict:
    """What retirement removes of the agent's credentials without secrets (R5 with R28): its keys and its own
    federated credentials still in force (revoked), and the blueprint defaults that stop applying to it (they stay
    for the blueprint's other agents: a retired agent matches no rule)."""
    now = now or timezone.now()
    return {
        "key_credentials": list(active_keys(agent, now).order_by("created_at")),
        "federated_credentials": list(FederatedCredential.objects.filter(agent=agent, revoked_at__isnull=True)
                                      .order_by("created_at")),
        "inherited_rules": list(inherited_rules(agent)),
    }


# --- reads --------------------------------------------------------------------------------------------------


def active_keys(agent: Agent, now: datetime | None = None):
    now = now or timezone.now()
    return KeyCredential.objects.filter(identity__agent=agent, revoked_at__isnull=True, expires_at__gt=now)


def inherited_rules(agent: Agent):
    """The federated credentials the agent holds through its blueprint (defaults set by an administrator)."""
    return FederatedCredential.objects.filter(blueprint_id=agent.blueprint_id, revoked_at__isnull=True) \
        .order_by("created_at")


def active_rules(agent: Agent):
    """The agent's own federated credentials and its blueprint's defaults that are in force."""
    return FederatedCredential.objects.filter(Q(agent=agent) | Q(blueprint_id=agent.blueprint_id),
                                              revoked_at__isnull=True)


def credential_types(agent: Agent) -> set[str]:
    """The credential types the agent can authenticate with now (a retired or identity-less agent: none)."""
    if agent.status == AgentStatus.RETIRED or not AgentIdentity.objects.filter(agent=agent).exists():
        return set()
    now = timezone.now()
    types = set()
    if Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True, expires_at__gt=now).exists():
        types.add(CredentialType.SECRET.value)
    if active_keys(agent, now).exists():
        types.add(CredentialType.KEY.value)
    if active_rules(agent).exists():
        types.add(CredentialType.FEDERATED.value)
    return types
