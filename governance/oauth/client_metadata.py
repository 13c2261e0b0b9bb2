"""Client metadata (RFC 7591 §2) as registered or fetched, checked once at the edge (docs/oauth.md, "Client
registration"): the same rules for dynamic registration, client ID metadata documents and static clients.

``ClientError`` carries an RFC 7591 error code (``invalid_redirect_uri``, ``invalid_client_metadata``) or
``invalid_client`` when a client ID metadata document cannot be used at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

from governance.oauth.choices import AuthMethod
from portal.network import is_loopback_host

GRANT_TYPES = ("authorization_code", "refresh_token")
RESPONSE_TYPES = ("code",)
APPLICATION_TYPES = ("web", "native")
MAX_REDIRECT_URIS = 20
MAX_URI = 2000
MAX_SCOPE = 2000
#: The optional human-readable fields kept as they come (strings, bounded), as RFC 7591 §2 names them.
TEXT_FIELDS = {"client_name": 200, "client_uri": 500, "logo_uri": 500, "tos_uri": 500, "policy_uri": 500,
               "software_id": 200, "software_version": 100}


class ClientError(Exception):
    """A client (its metadata or its metadata document) that cannot be used, with the OAuth error code and a short
    description safe to show the caller."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass
class ClientMetadata:
    """Metadata after checking, with the defaults of RFC 7591 §2 filled in."""

    redirect_uris: list[str]
    grant_types: list[str]
    response_types: list[str]
    token_endpoint_auth_method: str
    application_type: str
    scopes: list[str]
    client_name: str = ""
    client_uri: str = ""
    logo_uri: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The metadata as echoed back to the client (RFC 7591 §3.2.1)."""
        data = {"redirect_uris": self.redirect_uris, "grant_types": self.grant_types,
                "response_types": self.response_types, "token_endpoint_auth_method": self.token_endpoint_auth_method,
                "application_type": self.application_type, **self.extra}
        for name in ("client_name", "client_uri", "logo_uri"):
            if getattr(self, name):
                data[name] = getattr(self, name)
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        return data

    @property
    def all_redirects_loopback(self) -> bool:
        return bool(self.redirect_uris) and all(is_loopback_uri(uri) for uri in self.redirect_uris)


def is_loopback_uri(uri: str) -> bool:
    """An ``http`` URI on the loopback interface (RFC 8252 §7.3): what native apps redirect to."""
    try:
        parts = urlsplit(uri)
        return parts.scheme == "http" and is_loopback_host(parts.hostname)
    except ValueError:
        return False


def check_redirect_uri(uri: object, *, native: bool) -> str:
    """One redirect URI: absolute, no fragment, https, or http on loopback (when settings allow it or the client is
    a native app, RFC 8252 §7.3). Returns it unchanged; raises ``invalid_redirect_uri``."""
    if not isinstance(uri, str) or not uri or len(uri) > MAX_URI:
        raise ClientError("invalid_redirect_uri", "each redirect URI must be a string of at most 2000 characters")
    shown = uri[:100]
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - a bad port raises ValueError
    except ValueError as exc:
        raise ClientError("invalid_redirect_uri", f"{shown} is not a valid URI") from exc
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise ClientError("invalid_redirect_uri", f"{shown} is not an absolute URI")
    if "#" in uri:
        raise ClientError("invalid_redirect_uri", f"{shown} has a fragment")
    if parts.username or parts.password:
        raise ClientError("invalid_redirect_uri", f"{shown} carries credentials")
    if any(ord(c) < 0x21 or ord(c) > 0x7e for c in uri):
        raise ClientError("invalid_redirect_uri", "a redirect URI holds spaces or non-ASCII characters")
    if parts.scheme == "https":
        return uri
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        if native or settings.OAUTH_ALLOW_LOOPBACK_HTTP:
            return uri
        raise ClientError("invalid_redirect_uri", f"{shown}: plain http on loopback is for native applications")
    raise ClientError("invalid_redirect_uri", f"{shown}: redirect URIs use https (or http on loopback)")


def _string_list(raw: dict, name: str, default: list[str]) -> list[str]:
    value = raw.get(name, default)
    if value is None:
        return list(default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > MAX_REDIRECT_URIS:
        raise ClientError("invalid_client_metadata", f"{name} must be a list of strings")
    return list(dict.fromkeys(value))


def parse(raw: object, *, default_auth_method: str = AuthMethod.CLIENT_SECRET_BASIC,
          secret_allowed: bool = True) -> ClientMetadata:
    """Check client metadata (a JSON object) and fill in the defaults of RFC 7591 §2."""
    if not isinstance(raw, dict):
        raise ClientError("invalid_client_metadata", "the client metadata must be a JSON object")
    application_type = raw.get("application_type") or "web"
    if application_type not in APPLICATION_TYPES:
        raise ClientError("invalid_client_metadata", "application_type must be web or native")
    grant_types = _string_list(raw, "grant_types", ["authorization_code"])
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown or not grant_types:
        raise ClientError("invalid_client_metadata",
                          f"unsupported grant type {(unknown or [''])[0][:60]!r}: use authorization_code and "
                          f"refresh_token")
    if "authorization_code" not in grant_types:
        raise ClientError("invalid_client_metadata", "grant_types must include authorization_code")
    response_types = _string_list(raw, "response_types", ["code"])
    if response_types != ["code"]:
        raise ClientError("invalid_client_metadata", "response_types must be [\"code\"]")
    method = raw.get("token_endpoint_auth_method") or default_auth_method
    if method not in AuthMethod.values:
        raise ClientError("invalid_client_metadata", "token_endpoint_auth_method must be none, client_secret_basic "
                                                     "or client_secret_post")
    if method != AuthMethod.NONE and not secret_allowed:
        raise ClientError("invalid_client_metadata", "this client cannot hold a secret: use "
                                                     "token_endpoint_auth_method none")
    uris = raw.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        raise ClientError("invalid_redirect_uri", "redirect_uris must be a non-empty list")
    if len(uris) > MAX_REDIRECT_URIS:
        raise ClientError("invalid_redirect_uri", f"at most {MAX_REDIRECT_URIS} redirect URIs")
    redirect_uris = list(dict.fromkeys(check_redirect_uri(u, native=application_type == "native") for u in uris))
    scope = raw.get("scope", "")
    if scope is None:
        scope = ""
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE or any(ord(c) < 0x20 or ord(c) > 0x7e or c in '"\\'
                                                                    for c in scope):
        raise ClientError("invalid_client_metadata", "scope must be a space-separated string of scopes")
    text: dict[str, str] = {}
    for name, limit in TEXT_FIELDS.items():
        value = raw.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > limit:
            raise ClientError("invalid_client_metadata", f"{name} must be a string of at most {limit} characters")
        if value:
            text[name] = value
    contacts = raw.get("contacts")
    extra = {k: v for k, v in text.items() if k not in ("client_name", "client_uri", "logo_uri")}
    if contacts is not None:
        if not isinstance(contacts, list) or len(contacts) > 10 or not all(
                isinstance(c, str) and len(c) <= 200 for c in contacts):
            raise ClientError("invalid_client_metadata", "contacts must be a short list of strings")
        extra["contacts"] = contacts
    return ClientMetadata(redirect_uris=redirect_uris, grant_types=grant_types, response_types=response_types,
                          token_endpoint_auth_method=method, application_type=application_type,
                          scopes=list(dict.fromkeys(scope.split())), client_name=text.get("client_name", ""),
                          client_uri=text.get("client_uri", ""), logo_uri=text.get("logo_uri", ""), extra=extra)
