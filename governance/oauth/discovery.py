"""Discovery (R24): the authorization server's metadata (RFC 8414, OpenID Connect Discovery) and the portal API's
protected-resource metadata (RFC 9728), as plain functions of the settings and the catalog (docs/oauth.md,
"Discovery").

``issuer`` is ``PORTAL_BASE_URL`` byte for byte, the same string as the ``iss`` of every token and authorization
response: clients compare issuers as plain strings, so a trailing ``/`` anywhere would be a mismatch. Every
endpoint is ``PORTAL_BASE_URL`` followed by its path.
"""

from __future__ import annotations

from django.conf import settings

from governance.signin import assertions, resources
from portal.choices import Product
from portal.models import Permission

#: The paths of the endpoints the metadata advertises (each resolves to a named URL: tests hold them together).
ENDPOINT_PATHS = {
    "authorization_endpoint": "/oauth/authorize/",
    "token_endpoint": "/oauth/token/",
    "jwks_uri": "/oauth/jwks/",
    "registration_endpoint": "/oauth/register/",
    "introspection_endpoint": "/oauth/introspect/",
    "revocation_endpoint": "/oauth/revoke/",
}

GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials",
               "urn:ietf:params:oauth:grant-type:token-exchange", assertions.JWT_BEARER_GRANT]
CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# Agents without secrets (docs/oauth.md): the token endpoint also takes a signed client assertion.
TOKEN_AUTH_METHODS = [*CLIENT_AUTH_METHODS, "private_key_jwt"]
OFFLINE_ACCESS = "offline_access"
PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource"


def issuer() -> str:
    return settings.PORTAL_BASE_URL


def registration_open() -> bool:
    """Dynamic client registration is advertised unless it is turned off (``OAUTH_DYNAMIC_REGISTRATION``)."""
    return settings.OAUTH_DYNAMIC_REGISTRATION != "off"


def scopes_supported() -> list[str]:
    """What a client may ask for: the catalog's non-privileged permissions, every registered resource's scopes and
    ``offline_access`` (a refresh token). Privileged permissions never reach an agent (R4), so none is offered."""
    names = set(Permission.objects.filter(privileged=False).values_list("name", flat=True))
    for resource in resources.registered():
        names.update(resource.scopes or ())
    names.add(OFFLINE_ACCESS)
    return sorted(names)


def authorization_server_metadata() -> dict:
    """RFC 8414 §2. Only S256 is a PKCE method (R27): ``plain`` is never advertised nor accepted."""
    base = issuer()
    metadata = {"issuer": base}
    for field, path in ENDPOINT_PATHS.items():
        if field == "registration_endpoint" and not registration_open():
            continue
        metadata[field] = base + path
    metadata.update({
        "scopes_supported": scopes_supported(),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(TOKEN_AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(assertions.ALGORITHMS),
        "revocation_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(CLIENT_AUTH_METHODS),
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,  # RFC 9207
        "client_id_metadata_document_supported": True,
    })
    return metadata


def openid_configuration() -> dict:
    """OpenID Connect Discovery 1.0 for clients that only look there. The portal issues no ID tokens (it is an OAuth
    authorization server, not an OpenID provider); the two fields below are required by that document's schema and
    say how an ID token would be signed if one were issued."""
    return {**authorization_server_metadata(), "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"]}


def portal_api_scopes() -> list[str]:
    """The scopes the portal API accepts as a resource: the catalog's non-privileged permissions of the portal."""
    return sorted(set(Permission.objects.filter(product=Product.PORTAL, privileged=False)
                      .values_list("name", flat=True)))


def protected_resource_url() -> str:
    return issuer() + PROTECTED_RESOURCE_PATH


def protected_resource_metadata() -> dict:
    """RFC 9728 §2: the portal API as a protected resource whose authorization server is this portal (R26)."""
    return {"resource": resources.portal_identifier(), "authorization_servers": [issuer()],
            "scopes_supported": portal_api_scopes(), "bearer_methods_supported": ["header"],
            "resource_name": resources.portal_resource().name}
