"""Who may call the portal API: sessions and bearer access tokens (R22). Kept apart from ``portal.api`` because DRF
imports its default permission class while ``rest_framework.views`` is still loading.

An agent's access token (governance authenticates it) reaches the API as ``request.auth`` with ``scopes``.
A token speaking for a person (a user-account agent, or an agent acting for a user) has that person as
``request.user``: the person's visibility applies *and* the token's scopes (R13). An app-only token (an agent
identity) reads what its scopes name in its own agent's workspace; only ``Portal.Read.All`` (``ORGANISATION_READ``)
widens that to every workspace (R13). Tokens never write through the API.
"""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

#: Where the portal API's protected-resource metadata is (RFC 9728; docs/oauth.md, "Resource indicators").
PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource"


def bearer_challenge(*, error: str = "", scope: str = "", description: str = "") -> str:
    """RFC 6750 §3 / RFC 9728 §5.1: the ``WWW-Authenticate`` value that sends a client to the API's
    protected-resource metadata (and from there to this authorization server)."""
    parts = ['realm="portal-api"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'").replace("\\", "/")))
    if scope:
        parts.append(f'scope="{scope}"')
    parts.append(f'resource_metadata="{settings.PORTAL_BASE_URL}{PROTECTED_RESOURCE_PATH}"')
    return "Bearer " + ", ".join(parts)


class InsufficientScope(PermissionDenied):
    """RFC 6750 §3.1 ``insufficient_scope``: a 403 whose challenge names the scopes that would do."""

    def __init__(self, detail: str, scopes) -> None:
        super().__init__(detail, code="insufficient_scope")
        self.auth_header = bearer_challenge(error="insufficient_scope", scope=" ".join(scopes))


def token_scopes(request) -> frozenset[str] | None:
    scopes = getattr(request.auth, "scopes", None)
    return frozenset(scopes) if scopes is not None else None


def app_only(request) -> bool:
    """An agent identity's own token: no person behind it."""
    return token_scopes(request) is not None and getattr(request.auth, "subject_id", None) is None


#: The scope that lets an agent's own token read every workspace instead of its own (docs/design.md, R13).
ORGANISATION_READ = "Portal.Read.All"


def app_reads(request, queryset, workspace_field: str = "workspace"):
    """What an app-only token reads of ``queryset``: the rows of its agent's workspace (``workspace_field`` leads
    there), or every row when the token holds ``ORGANISATION_READ``."""
    if ORGANISATION_READ in (token_scopes(request) or ()):
        return queryset
    return queryset.filter(**{workspace_field: request.auth.agent.workspace_id})


class ScopedAccess(BasePermission):
    """Sessions must be signed in; bearer tokens need a safe method and one of the view's ``read_scopes``."""

    message = "Sign in, or present an access token."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        scopes = token_scopes(request)
        if scopes is None:
            return True
        accepted = tuple(getattr(view, "read_scopes", ()))
        if request.method not in SAFE_METHODS:
            self.message = "Access tokens are read-only on the portal API."
            return False
        if not scopes & set(accepted):
            if not accepted:
                self.message = "This endpoint does not accept access tokens."
                return False
            raise InsufficientScope(f"The token lacks a scope this endpoint accepts: {' or '.join(accepted)}.",
                                    accepted)
        return True
