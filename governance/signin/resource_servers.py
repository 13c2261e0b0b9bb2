"""Registering resources (R26): identifiers, scopes that join the catalog, and agents as resources
(docs/oauth.md, "Resource indicators").

A resource's ``identifier`` is the audience of its tokens (RFC 8707): an absolute ``https`` URI without a fragment
(plain ``http`` only on loopback when ``OAUTH_ALLOW_LOOPBACK_HTTP`` is set), never the portal's own identifier.
Its scopes are RFC 6749 scope tokens; each becomes a delegated, non-privileged permission of the catalog (product
"Registered resource server") when none of that name exists, so agents hold them through access packages and people
through directory roles like any other right. A scope that names a privileged permission is refused (R4).

An agent may itself be a resource (an agent called by other agents): its workspace's owners bind an identifier and
scopes to it (``agent_resource_set``). It needs no secret: it verifies the tokens it receives offline against the
JWKS. Every change tells the token endpoint to reload the registered resources (``resources.resources_changed``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from agents import credentials as credential_hashing
from agents.models import Agent
from governance.signin import resources
from governance.signin.models import ResourceServer
from portal import audit, network, rbac
from portal.choices import PermissionKind, Product, WorkspaceRole
from portal.models import Permission, User

# RFC 6749 Appendix A: scope-token = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E.
SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,150}$")

def clean_identifier(value: str | None) -> str:
    """The identifier as it will be matched (byte for byte), or a ``ValidationError`` saying what is wrong."""
    identifier = (value or "").strip()
    problem = ""
    try:
        parts = urlsplit(identifier)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if not identifier:
        problem = "Give the resource an identifier (an absolute https URI)."
    elif len(identifier) > 300 or any(ord(c) <= 0x20 or ord(c) >= 0x7f for c in identifier):
        problem = "The identifier must be a printable URI of at most 300 characters."
    elif parts is None or not parts.scheme or not host:
        problem = "The identifier must be an absolute URI (https://host/path)."
    elif "#" in identifier:
        problem = "The identifier must not have a fragment (RFC 8707)."
    elif parts.scheme == "http" and settings.OAUTH_ALLOW_LOOPBACK_HTTP and network.is_loopback_host(host):
        pass
    elif parts.scheme != "https":
        problem = "The identifier must use https (plain http only on loopback, when allowed)."
    if not problem and identifier == resources.portal_identifier():
        problem = "That is the portal API's own identifier."
    if problem:
        raise ValidationError({"identifier": problem})
    return identifier


def clean_scopes(value: str | Iterable[str] | None) -> list[str]:
    """Space-separated (or listed) scope tokens, deduplicated in order; a ``ValidationError`` for a bad one."""
    items = value.split() if isinstance(value, str) else [str(v) for v in (value or ())]
    scopes: list[str] = []
    for item in items:
        if not SCOPE_TOKEN.match(item):
            raise ValidationError({"scopes": f"'{item[:40]}' is not a scope token (printable ASCII, no space, quote "
                                             "or backslash)."})
        if item not in scopes:
            scopes.append(item)
    return scopes


def scopes_join_catalog(scopes: Iterable[str]) -> list[str]:
    """Make each scope a delegated, non-privileged permission of the catalog unless one of that name exists; refuse
    a privileged one (R4). Returns the names created."""
    scopes = list(scopes)
    existing = dict(Permission.objects.filter(name__in=scopes).values_list("name", "privileged"))
    privileged = sorted(name for name, is_privileged in existing.items() if is_privileged)
    if privileged:
        raise ValidationError({"scopes": f"Privileged permissions can never be a resource's scope: "
                                         f"{', '.join(privileged)}."})
    created = [name for name in scopes if name not in existing]
    Permission.objects.bulk_create([
        Permission(name=name, kind=PermissionKind.DELEGATED, product=Product.RESOURCE, privileged=False,
                   description="A scope of a registered resource server") for name in created])
    return created


def _unique_identifier(identifier: str, server: ResourceServer | None = None) -> None:
    taken = ResourceServer.objects.filter(identifier=identifier)
    if server is not None:
        taken = taken.exclude(pk=server.pk)
    if taken.exists():
        raise ValidationError({"identifier": "Another resource server has that identifier."})


def register(*, actor: User | None, name: str, identifier: str | None, scopes) -> dict:
    """Check a new resource server's identifier and scopes and add its scopes to the catalog (inside the caller's
    transaction); returns the fields to create it with."""
    cleaned_scopes = clean_scopes(scopes)
    if identifier is None or identifier == "":
        if cleaned_scopes:
            raise ValidationError({"identifier": "Scopes need an identifier for the tokens to carry them."})
        return {"identifier": None, "scopes": []}
    cleaned = clean_identifier(identifier)
    _unique_identifier(cleaned)
    scopes_join_catalog(cleaned_scopes)
    return {"identifier": cleaned, "scopes": cleaned_scopes}


def changed() -> None:
    """Tell the token endpoints the registered resources changed: now, and again once committed (no process keeps
    the old set under the new version)."""
    resources.resources_changed()
    transaction.on_commit(resources.resources_changed)


# --- agents as resources ----------------------------------------------------------------------------------------
def can_make_resource(user, agent: Agent) -> bool:
    """Only the owners (explicit or inherited) of the agent's workspace make it a resource."""
    return bool(user and user.is_authenticated and user.is_active
                and rbac.workspace_role(user, agent.workspace) == WorkspaceRole.OWNER)


@transaction.atomic
def agent_resource_set(*, actor: User | None, agent: Agent, identifier: str, scopes) -> ResourceServer:
    """Make an agent a resource other agents get tokens for, or change its identifier and scopes (R26). The
    resource has a client id but no usable secret: the agent verifies tokens offline against the JWKS."""
    if actor is not None and not can_make_resource(actor, agent):
        raise PermissionDenied("Only the owners of the agent's workspace make it a resource.")
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    server = ResourceServer.objects.select_for_update().filter(agent=agent).first()
    cleaned = clean_identifier(identifier)
    cleaned_scopes = clean_scopes(scopes)
    if not cleaned_scopes:
        raise ValidationError({"scopes": "Name at least one scope the agent accepts."})
    _unique_identifier(cleaned, server)
    scopes_join_catalog(cleaned_scopes)
    before = None
    if server is None:
        name = f"Agent {agent.name}"[:150]
        if ResourceServer.objects.filter(name__iexact=name).exists():
            name = f"{name[:140]} #{agent.pk}"
        # An unguessable secret hash nobody holds: the agent never introspects with it.
        server = ResourceServer(name=name, agent=agent, client_id="rs-" + secrets.token_hex(12),
                                secret_hash=credential_hashing.hash_secret(secrets.token_urlsafe(32)),
                                created_by=actor if actor is not None and actor.pk else None)
    else:
        before = {"identifier": server.identifier, "scopes": server.scopes, "revoked": server.revoked_at is not None}
    server.identifier, server.scopes, server.revoked_at = cleaned, cleaned_scopes, None
    server.save()
    audit.record(actor=actor, action="resource_server.agent_set", target=server, workspace=agent.workspace,
                 before=before, after={"agent": agent.name, "identifier": cleaned, "scopes": cleaned_scopes})
    changed()
    return server
