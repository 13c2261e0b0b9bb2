"""What the authorization endpoint and the token grants ask about a client (R27; docs/oauth.md, "Client
registration"): which client an id names, whether a redirect URI is one of its own, and whether it may get codes
and tokens now.

``ClientError(error, description)`` is raised when a client ID metadata document cannot be used; ``error`` is an
OAuth error code (``invalid_client``, ``invalid_client_metadata``, ``invalid_redirect_uri``, ``access_denied``).
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from agents.choices import AgentStatus
from governance.oauth import cimd, registration
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.client_metadata import ClientError, is_loopback_uri
from governance.oauth.models import OAuthClient

__all__ = ["ClientError", "may_get_tokens", "redirect_uri_matches", "resolve_client"]

MAX_CLIENT_ID = 300


def resolve_client(client_id: str) -> OAuthClient | None:
    """The client with this id, or None. An https URL (or, when ``OAUTH_ALLOW_LOOPBACK_HTTP``, a loopback http
    URL) not yet known, or whose document's cache time has passed, is fetched as a client ID metadata document and
    registered or refreshed under the registration policy; ``ClientError`` when that document cannot be used."""
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_CLIENT_ID:
        return None
    client = OAuthClient.objects.select_related("agent", "agent__workspace").filter(client_id=client_id).first()
    if not cimd.looks_like_document_url(client_id):
        return client
    if client is not None and (client.source != ClientSource.METADATA_DOCUMENT
                               or client.agent.status == AgentStatus.RETIRED
                               or not registration.is_stale(client)):
        return client
    document = cimd.fetch(client_id)
    client = registration.client_register_from_document(url=client_id, document=document)
    return OAuthClient.objects.select_related("agent", "agent__workspace").get(pk=client.pk)


def _without_port(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def redirect_uri_matches(client: OAuthClient, uri: str) -> bool:
    """Exact string match against a registered redirect URI; a loopback one (http on 127.0.0.1, [::1] or
    localhost) matches on any port, as native apps pick a free port at run time (RFC 8252 §7.3)."""
    if not isinstance(uri, str) or not uri:
        return False
    registered = client.redirect_uris or []
    if uri in registered:
        return True
    if "#" in uri or not is_loopback_uri(uri):
        return False
    try:
        wanted = _without_port(uri)
        return any(is_loopback_uri(r) and _without_port(r) == wanted for r in registered)
    except ValueError:
        return False


def may_get_tokens(client: OAuthClient) -> str:
    """"" when the client is approved and its agent may act; otherwise why not (shown to the person signing in)."""
    if client.approval == ClientApproval.PENDING:
        return "the client is waiting for an administrator's approval"
    if client.approval == ClientApproval.DENIED:
        return "an administrator denied this client"
    return client.agent.stop_reason
