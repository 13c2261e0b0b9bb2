"""Client ID metadata documents (docs/oauth.md, "Client registration"): a client whose ``client_id`` is an https URL
publishes its metadata at that URL; the portal fetches it, checks it like a registration and caches it.

The fetch is guarded because the URL comes from whoever starts a sign-in: https only (plain http only for loopback
hosts when ``OAUTH_ALLOW_LOOPBACK_HTTP``), only hosts in ``OAUTH_CIMD_ALLOWED_HOSTS`` when that is set, no
redirects, a 5 s timeout, and at most 5 KiB read as a stream (a bigger body is refused, never read whole).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from governance.oauth.choices import AuthMethod
from governance.oauth.client_metadata import ClientError, ClientMetadata, parse
from portal.network import is_loopback_host

MAX_BYTES = 5 * 1024
TIMEOUT_SECONDS = 5.0
DEFAULT_CACHE_SECONDS = 24 * 3600
MIN_CACHE_SECONDS = 60
MAX_CACHE_SECONDS = 24 * 3600
MAX_URL = 300  # OAuthClient.client_id
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


@dataclass
class Document:
    metadata: ClientMetadata
    cache_seconds: int


def looks_like_document_url(client_id: str) -> bool:
    return client_id.startswith(("https://", "http://"))


def check_url(url: str) -> None:
    """The URL rules, before any network traffic: https (or loopback http when allowed), a path, no fragment, no
    credentials, and a host from ``OAUTH_CIMD_ALLOWED_HOSTS`` when that list is set."""
    if len(url) > MAX_URL:
        raise ClientError("invalid_client", f"a client ID URL is at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises ValueError
    except ValueError as exc:
        raise ClientError("invalid_client", "the client ID is not a valid URL") from exc
    host = (parts.hostname or "").lower()
    if not host or parts.username or parts.password or "#" in url:
        raise ClientError("invalid_client", "a client ID URL has a host and no credentials or fragment")
    if parts.path in ("", "/"):
        raise ClientError("invalid_client", "a client ID URL has a path")
    if parts.scheme == "http":
        if not (is_loopback_host(host) and settings.OAUTH_ALLOW_LOOPBACK_HTTP):
            raise ClientError("invalid_client", "a client ID metadata document is fetched over https only")
    elif parts.scheme != "https":
        raise ClientError("invalid_client", "a client ID metadata document is fetched over https only")
    allowed = [h.strip().lower() for h in settings.OAUTH_CIMD_ALLOWED_HOSTS if h.strip()]
    listed = host in allowed or parts.netloc.lower() in allowed
    if allowed and not listed:
        raise ClientError("invalid_client", f"client ID metadata documents are not accepted from {host[:100]}")
    if not listed and _internal_address(host):
        raise ClientError("invalid_client", "a client ID metadata document is not fetched from an internal address")


def _internal_address(host: str) -> bool:
    """A literal private, link-local or reserved address (loopback only when ``OAUTH_ALLOW_LOOPBACK_HTTP``): the
    fetch must not become a way into the portal's own network. Names are not resolved here; list the hosts in
    ``OAUTH_CIMD_ALLOWED_HOSTS`` to close that too."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if address.is_loopback:
        return not settings.OAUTH_ALLOW_LOOPBACK_HTTP
    return (address.is_private or address.is_link_local or address.is_reserved or address.is_multicast
            or address.is_unspecified)


def cache_seconds(cache_control: str) -> int:
    """How long a document stays fresh: its ``Cache-Control`` max-age, bounded, else 24 hours."""
    if "no-store" in cache_control.lower() or "no-cache" in cache_control.lower():
        return MIN_CACHE_SECONDS
    match = _MAX_AGE.search(cache_control)
    if not match:
        return DEFAULT_CACHE_SECONDS
    return max(MIN_CACHE_SECONDS, min(MAX_CACHE_SECONDS, int(match.group(1))))


def _read(url: str) -> tuple[bytes, str]:
    try:
        with httpx.Client(follow_redirects=False, timeout=TIMEOUT_SECONDS, trust_env=False) as client, \
                client.stream("GET", url, headers={"Accept": "application/json",
                                                     "Accept-Encoding": "identity"}) as response:
            if response.is_redirect or 300 <= response.status_code < 400:
                raise ClientError("invalid_client", "the client ID metadata document redirects; redirects are "
                                                    "not followed")
            if response.status_code != 200:
                raise ClientError("invalid_client", f"the client ID metadata document answered "
                                                    f"{response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_BYTES:
                raise ClientError("invalid_client", "the client ID metadata document is larger than 5 KiB")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ClientError("invalid_client", "the client ID metadata document is larger than 5 KiB")
            return bytes(body), response.headers.get("cache-control", "")
    except httpx.HTTPError as exc:
        raise ClientError("invalid_client", "the client ID metadata document could not be fetched") from exc


def fetch(url: str) -> Document:
    """Fetch and check the document at ``url``; its ``client_id`` must be ``url`` exactly."""
    check_url(url)
    body, cache_control = _read(url)
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientError("invalid_client_metadata", "the client ID metadata document is not JSON") from exc
    if not isinstance(raw, dict):
        raise ClientError("invalid_client_metadata", "the client ID metadata document is not a JSON object")
    if raw.get("client_id") != url:
        raise ClientError("invalid_client_metadata", "the document's client_id is not the URL it was fetched from")
    # A document is public: no shared secret can come with it, so the client authenticates with PKCE alone.
    metadata = parse(raw, default_auth_method=AuthMethod.NONE, secret_allowed=False)
    return Document(metadata, cache_seconds(cache_control))
