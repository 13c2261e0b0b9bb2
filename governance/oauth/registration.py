"""Client registration services (R27; docs/oauth.md, "Client registration"): every OAuth client is an agent in the
registry, set up through the registry's own services so sponsors and owners (R7), audit (R23) and the registry's
signals hold, and governed like any agent from then on.

- ``client_register``: dynamic registration (RFC 7591), an administrator's static client, or a client ID metadata
  document, under ``OAUTH_DYNAMIC_REGISTRATION``: ``open`` approves clients whose redirect URIs are all loopback
  (native apps on the user's own machine) and queues the rest; ``approval`` queues every client; ``off`` refuses
  dynamic and document clients (administrators still register static ones).
- ``client_approve`` / ``client_deny`` / ``client_retire``: the approval queue and the end of a client.

A queued client's agent is ``pending_approval`` and gets no code or token (``clients.may_get_tokens``) until a
Global or Security Administrator or an owner of its workspace approves it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import Permission as AuthPermission
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents import credentials, policy, registry
from agents.choices import AgentKind, AgentScope, AgentStatus, IdentityType, PublisherKind
from agents.models import Agent, AgentUserObjectPermission, Blueprint, Credential, Publisher
from governance.oauth.choices import AuthMethod, ClientApproval, ClientSource
from governance.oauth.cimd import Document
from governance.oauth.client_metadata import ClientError, ClientMetadata
from governance.oauth.models import OAuthClient, RefreshToken
from portal import audit, changes, rbac
from portal.choices import UserKind, WorkspaceRole
from portal.models import User, Workspace, WorkspaceMembership

BLUEPRINT_NAME = "oauth-client-application"
PUBLISHER_NAME = "OAuth client applications (built in)"
_NOT_IN_NAME = re.compile(r"[^\w .@+-]+")


@dataclass
class Registered:
    """A new client and what is shown once: its secret (confidential clients) and registration access token."""

    client: OAuthClient
    client_secret: str = ""
    client_secret_expires_at: int = 0
    registration_access_token: str = ""


# --- where clients live ----------------------------------------------------------------------------------------
@transaction.atomic
def client_blueprint_ensure() -> Blueprint:
    """The built-in "OAuth client application" blueprint (organisation publisher, no permissions), created once."""
    existing = Blueprint.objects.filter(name=BLUEPRINT_NAME).order_by("-version").first()
    if existing is not None:
        return existing
    publisher, _ = Publisher.objects.get_or_create(name=PUBLISHER_NAME,
                                                   defaults={"kind": PublisherKind.ORGANISATION})
    manifest = {"Descriptor": {"Name": BLUEPRINT_NAME, "DisplayName": "OAuth client application",
                               "Description": "An application people sign in to through the portal."}}
    try:
        with transaction.atomic():
            blueprint = Blueprint.objects.create(
                name=BLUEPRINT_NAME, version=1, display_name="OAuth client application",
                description="Built in: every OAuth client is an agent set up from this blueprint. It requires no "
                            "permission; a client acts for the people who consent to it.",
                publisher=publisher, publisher_kind=publisher.kind, manifest=manifest,
                manifest_digest=hashlib.sha256(repr(manifest).encode()).hexdigest(), is_complete=True)
    except IntegrityError:  # another process created it first
        return Blueprint.objects.get(name=BLUEPRINT_NAME, version=1)
    audit.record(actor=None, action="blueprint.builtin_create", target=blueprint,
                 after={"name": BLUEPRINT_NAME, "publisher": publisher.name})
    return blueprint


def registration_workspace() -> Workspace:
    """``OAUTH_REGISTRATION_WORKSPACE`` (a slug), or else the oldest workspace."""
    slug = settings.OAUTH_REGISTRATION_WORKSPACE
    workspace = (Workspace.objects.filter(slug=slug).first() if slug
                 else Workspace.objects.order_by("created_at", "pk").first())
    if workspace is None:
        raise ClientError("invalid_client_metadata", "the portal has no workspace to register clients in")
    return workspace


def workspace_owners(workspace: Workspace) -> list[User]:
    """The workspace's explicit owners (people, active); else its inherited owners (R11)."""
    owners = [m.user for m in WorkspaceMembership.objects.filter(
        workspace=workspace, role=WorkspaceRole.OWNER, user__is_active=True, user__kind=UserKind.HUMAN,
    ).select_related("user").order_by("user__username")]
    return owners or [o.user for o in rbac.effective_owners(workspace)]


def can_decide(user, client: OAuthClient) -> bool:
    """Approve, deny and retire: Global and Security (and Compliance) Administrators, who own every workspace
    (R11), and the owners of the client's workspace."""
    return rbac.has_workspace_perm(user, client.agent.workspace, rbac.MANAGE_MEMBERS)


def can_register_static(user) -> bool:
    """Static clients are registered by administrators who own the registration workspace."""
    try:
        return rbac.has_workspace_perm(user, registration_workspace(), rbac.MANAGE_MEMBERS)
    except ClientError:
        return False


def _agent_name(metadata: ClientMetadata, client_id: str) -> str:
    base = _NOT_IN_NAME.sub(" ", metadata.client_name).strip() or "OAuth client"
    return f"{' '.join(base.split())[:130]} {secrets.token_hex(3)}"


def token_hash(token: str) -> str:
    return credentials.hash_secret(token)


def registration_token_matches(client: OAuthClient, token: str) -> bool:
    return bool(client.registration_token_hash) and hmac.compare_digest(client.registration_token_hash,
                                                                         token_hash(token))


def _stored_metadata(metadata: ClientMetadata, cache_seconds: int | None) -> dict:
    stored = metadata.as_dict()
    if cache_seconds is not None:
        stored["_cache_seconds"] = cache_seconds
    return stored


def public_metadata(client: OAuthClient) -> dict:
    """The metadata as RFC 7591 §3.2.1 / RFC 7592 §3 echo it (no secret, no bookkeeping)."""
    data = {k: v for k, v in client.metadata.items() if not k.startswith("_")}
    data["client_id"] = client.client_id
    data["client_id_issued_at"] = int(client.created_at.timestamp())
    return data


# --- registration ----------------------------------------------------------------------------------------------
@transaction.atomic
def client_register(*, actor: User | None, metadata: ClientMetadata, source: str, client_id: str = "",
                    cache_seconds: int | None = None) -> Registered:
    """Register a client as an agent of kind client application in the registration workspace (R27).

    ``actor`` is the administrator registering a static client, or None for dynamic registration and client ID
    metadata documents (nobody signs in to register). The policy of ``OAUTH_DYNAMIC_REGISTRATION`` decides whether
    the client starts approved or waits in the queue."""
    mode = settings.OAUTH_DYNAMIC_REGISTRATION
    workspace = registration_workspace()
    if source == ClientSource.STATIC:
        if actor is None or not can_register_static(actor):
            raise PermissionDenied("Only owners of the registration workspace register clients.")
        approved, people = True, [actor]
    else:
        if mode == "off":
            raise ClientError("access_denied", "client registration is turned off")
        approved = mode == "open" and metadata.all_redirects_loopback
        people = workspace_owners(workspace)
    if metadata.token_endpoint_auth_method != AuthMethod.NONE and workspace.forbid_new_secrets:
        problem = f"{workspace.name} forbids new client secrets: register a public client (no secret)"
        if source == ClientSource.STATIC:  # R28 (docs/design.md, Credential types in governance)
            raise ValidationError(problem + ".")
        raise ClientError("invalid_client_metadata", "the registration workspace forbids new client secrets")
    spec = registry.AgentSpec(blueprint=client_blueprint_ensure(), name=_agent_name(metadata, client_id),
                              identity_type=IdentityType.AGENT_IDENTITY, scope=AgentScope.WORKSPACE,
                              sponsors=people, owners=people, with_agent_user=False,
                              kind=AgentKind.CLIENT_APPLICATION,
                              justification=f"OAuth client registered ({source}).")
    try:
        provisioned = registry.agent_create(actor=None if source != ClientSource.STATIC else actor,
                                            workspace=workspace, spec=spec)
    except ValidationError as error:
        if source == ClientSource.STATIC:
            raise
        # e.g. a registration workspace left without an owner to hold the client (R7): say so, never a 5xx
        raise ClientError("invalid_client_metadata",
                          "the client cannot be set up: " + "; ".join(error.messages)[:150]) from error
    agent = provisioned.agent
    confidential = metadata.token_endpoint_auth_method != AuthMethod.NONE
    credential = Credential.objects.filter(identity__agent=agent).first()  # none where secrets are forbidden
    if not confidential and credential is not None:  # a public client holds no secret: the registry's is revoked
        registry.credential_revoke(actor=None, credential=credential)
    if not approved:
        Agent.objects.filter(pk=agent.pk).update(status=AgentStatus.PENDING_APPROVAL)
        agent.status = AgentStatus.PENDING_APPROVAL
    now = timezone.now()
    registration_token = secrets.token_urlsafe(32) if source != ClientSource.METADATA_DOCUMENT else ""
    client = OAuthClient.objects.create(
        agent=agent, client_id=client_id or provisioned.client_id, source=source,
        client_name=metadata.client_name, client_uri=metadata.client_uri, logo_uri=metadata.logo_uri,
        application_type=metadata.application_type, redirect_uris=metadata.redirect_uris,
        grant_types=metadata.grant_types, response_types=metadata.response_types,
        token_endpoint_auth_method=metadata.token_endpoint_auth_method, allowed_scopes=metadata.scopes,
        metadata=_stored_metadata(metadata, cache_seconds),
        registration_token_hash=token_hash(registration_token) if registration_token else "",
        approval=ClientApproval.APPROVED if approved else ClientApproval.PENDING,
        decided_by=actor if approved and actor is not None else None, decided_at=now if approved else None,
        decision_reason="" if not approved else ("registered by an administrator" if actor is not None
                                                 else "open registration of a loopback client"),
        created_at=now, metadata_fetched_at=now if source == ClientSource.METADATA_DOCUMENT else None,
    )
    audit.record(actor=actor, action="oauth.client_register", target=agent, workspace=workspace,
                 target_label=f"{client} (OAuth client)",
                 after={"client_id": client.client_id, "source": source, "approval": client.approval,
                        "agent_status": agent.status, "redirect_uris": client.redirect_uris,
                        "token_endpoint_auth_method": client.token_endpoint_auth_method,
                        "credential_prefix": credential.prefix if confidential else None})
    return Registered(client=client, client_secret=provisioned.client_secret if confidential else "",
                      client_secret_expires_at=int(credential.expires_at.timestamp()) if confidential else 0,
                      registration_access_token=registration_token)


def is_stale(client: OAuthClient) -> bool:
    """A client ID metadata document is refetched once its cache time has passed."""
    if client.metadata_fetched_at is None:
        return True
    seconds = client.metadata.get("_cache_seconds") or 24 * 3600
    return client.metadata_fetched_at + timedelta(seconds=seconds) <= timezone.now()


def client_register_from_document(*, url: str, document: Document) -> OAuthClient:
    """Register the client a metadata document describes, or refresh the one already registered (R27)."""
    try:
        with transaction.atomic():
            client = OAuthClient.objects.select_for_update().filter(client_id=url).first()
            if client is None:
                return client_register(actor=None, metadata=document.metadata,
                                       source=ClientSource.METADATA_DOCUMENT, client_id=url,
                                       cache_seconds=document.cache_seconds).client
            return _document_refresh(client=client, document=document)
    except IntegrityError:  # registered by a concurrent request for the same URL
        return OAuthClient.objects.select_related("agent").get(client_id=url)


@transaction.atomic
def _document_refresh(*, client: OAuthClient, document: Document) -> OAuthClient:
    metadata = document.metadata
    before = {"redirect_uris": client.redirect_uris, "client_name": client.client_name}
    client.client_name, client.client_uri, client.logo_uri = (metadata.client_name, metadata.client_uri,
                                                              metadata.logo_uri)
    client.application_type, client.redirect_uris = metadata.application_type, metadata.redirect_uris
    client.grant_types, client.response_types = metadata.grant_types, metadata.response_types
    client.token_endpoint_auth_method, client.allowed_scopes = metadata.token_endpoint_auth_method, metadata.scopes
    client.metadata = _stored_metadata(metadata, document.cache_seconds)
    client.metadata_fetched_at = timezone.now()
    client.save()
    audit.record(actor=None, action="oauth.client_refresh", target=client.agent, workspace=client.agent.workspace,
                 target_label=f"{client} (OAuth client)", before=before,
                 after={"redirect_uris": client.redirect_uris, "client_name": client.client_name})
    return client


# --- the approval queue and the end of a client ------------------------------------------------------------------
def _lock(client: OAuthClient) -> OAuthClient:
    return OAuthClient.objects.select_for_update(of=("self",)).select_related("agent", "agent__workspace") \
        .get(pk=client.pk)


def _has_active(agent: Agent, codename: str) -> bool:
    return AgentUserObjectPermission.objects.filter(content_object=agent, permission__codename=codename,
                                                    user__is_active=True, user__kind=UserKind.HUMAN).exists()


CLIENT_APPROVE_CHANGE = "oauth.client_approve"


def client_approve(*, actor: User, client: OAuthClient, break_glass: bool = False,
                   justification: str = "") -> OAuthClient | changes.ChangeRequest:
    """Approve a queued client (``_client_approve_now``). An approved client application may ask people of every
    workspace for their consent, so approving it is high-impact (R31; docs/four-eyes.md): it waits for a second
    administrator unless ``break_glass``, and the pending request is returned instead of the client."""
    return changes.gate(actor=actor, kind=CLIENT_APPROVE_CHANGE, break_glass=break_glass,
                        justification=justification, payload={"client_id": client.pk})


def _apply_client_approve(*, actor: User, payload: dict) -> OAuthClient:
    client = OAuthClient.objects.filter(pk=payload["client_id"]).first()
    if client is None:
        raise ValidationError("The client no longer exists.")
    return _client_approve_now(actor=actor, client=client)


def _describe_client(payload: dict) -> str:
    client = OAuthClient.objects.filter(pk=payload["client_id"]).first()
    return str(client) if client else "a removed client"


changes.register(CLIENT_APPROVE_CHANGE, label="Approve a client application for every workspace",
                 apply=_apply_client_approve, describe=_describe_client,
                 outcome=lambda client: f"{client} approved.")


@transaction.atomic
def _client_approve_now(*, actor: User, client: OAuthClient) -> OAuthClient:
    """Approve a queued client: its agent becomes active; the approver becomes its sponsor and owner when it has
    no active one (R7)."""
    client = _lock(client)
    if not can_decide(actor, client):
        raise PermissionDenied("Only administrators and owners of the client's workspace approve clients.")
    if client.approval != ClientApproval.PENDING or client.agent.status != AgentStatus.PENDING_APPROVAL:
        raise ValidationError("Only a client waiting for approval can be approved.")
    agent = client.agent
    for codename in (policy.OWN_AGENT, policy.SPONSOR_AGENT):
        if not _has_active(agent, codename):
            permission = AuthPermission.objects.get(content_type__app_label="agents", codename=codename)
            AgentUserObjectPermission.objects.get_or_create(permission=permission, user=actor, content_object=agent)
    registry.agent_activate(actor=actor, agent=agent)
    client.approval, client.decided_by, client.decided_at = ClientApproval.APPROVED, actor, timezone.now()
    client.decision_reason = ""
    client.save(update_fields=["approval", "decided_by", "decided_at", "decision_reason"])
    audit.record(actor=actor, action="oauth.client_approve", target=agent, workspace=agent.workspace,
                 target_label=f"{client} (OAuth client)", before={"approval": ClientApproval.PENDING},
                 after={"approval": client.approval, "client_id": client.client_id})
    return client


@transaction.atomic
def client_deny(*, actor: User, client: OAuthClient, reason: str) -> OAuthClient:
    """Deny a queued client (a reason is required): its agent is disabled and stays so."""
    client = _lock(client)
    if not can_decide(actor, client):
        raise PermissionDenied("Only administrators and owners of the client's workspace deny clients.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason for denying the client.")
    if client.approval != ClientApproval.PENDING:
        raise ValidationError("Only a client waiting for approval can be denied.")
    registry.agent_disable(actor=actor, agent=client.agent, reason=reason[:300])
    client.approval, client.decided_by, client.decided_at = ClientApproval.DENIED, actor, timezone.now()
    client.decision_reason = reason[:300]
    client.save(update_fields=["approval", "decided_by", "decided_at", "decision_reason"])
    audit.record(actor=actor, action="oauth.client_deny", target=client.agent, workspace=client.agent.workspace,
                 target_label=f"{client} (OAuth client)", before={"approval": ClientApproval.PENDING},
                 after={"approval": client.approval, "reason": client.decision_reason})
    return client


@transaction.atomic
def client_retire(*, actor: User | None, client: OAuthClient, via: str = "page") -> dict:
    """Retire a client (an administrator, or the client itself with its registration access token, RFC 7592):
    the registry retires its agent (R5: no credential remains), its refresh tokens are revoked and its
    registration access token stops working."""
    client = _lock(client)
    if actor is not None and not can_decide(actor, client):
        raise PermissionDenied("Only administrators and owners of the client's workspace retire clients.")
    if client.agent.status == AgentStatus.RETIRED:
        raise ValidationError("This client is already retired.")
    counts = registry.agent_retire(actor=actor, agent=client.agent)
    now = timezone.now()
    counts["refresh_tokens_revoked"] = RefreshToken.objects.filter(client=client, revoked_at__isnull=True) \
        .update(revoked_at=now, revoked_reason="client_retired")
    client.registration_token_hash = ""
    client.save(update_fields=["registration_token_hash"])
    audit.record(actor=actor, action="oauth.client_retire", target=client.agent, workspace=client.agent.workspace,
                 target_label=f"{client} (OAuth client)", after={"client_id": client.client_id, "via": via, **counts})
    return counts
