"""Bearer access tokens on the portal API (R22): DRF authentication over ``governance.signin.tokens``.

A token that speaks for a person authenticates as that person (their visibility applies, and the token's scopes
narrow it further, R13); an agent identity's own token authenticates as an ``AgentPrincipal``. Either way
``request.auth`` is the ``AccessToken`` whose ``scopes`` ``portal.api.ScopedAccess`` checks.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException

from governance.signin import resources, tokens
from portal import api_permissions


class AgentPrincipal:
    """The caller behind an app-only token: an agent, not a person."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = is_superuser = False
    pk = id = None
    kind = "agent"

    def __init__(self, agent):
        self.agent = agent
        self.username = f"agent:{agent.name}"

    def __str__(self) -> str:
        return self.username


class InvalidToken(APIException):
    """RFC 6750 §3.1 ``invalid_token``: always 401 (DRF would turn AuthenticationFailed into 403 when the session
    authenticator comes first)."""

    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "The access token is unknown, expired or revoked."
    default_code = "invalid_token"

    def __init__(self, detail=None, code=None, *, error: str = "invalid_token") -> None:
        super().__init__(detail, code)
        # DRF's exception handler sends ``auth_header`` as WWW-Authenticate: the challenge points at the API's
        # protected-resource metadata (RFC 9728 §5.1; docs/oauth.md, "Resource indicators").
        self.auth_header = api_permissions.bearer_challenge(error=error)


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if header.strip() == self.keyword:  # the scheme without a token: a challenge with no error (RFC 6750 §3.1)
            raise InvalidToken("Present an access token.", error="")
        if not header.startswith(f"{self.keyword} "):
            return None
        token = tokens.live_token(header[len(self.keyword) + 1:].strip())
        if token is None or token.claims.get("aud") != resources.portal_identifier():  # R26: only tokens for us
            raise InvalidToken()
        tokens.mark_used(token.pk, token.last_used_at, timezone.now())  # a use: docs/design.md, "Usage"
        principal = token.subject if token.subject_id is not None else AgentPrincipal(token.agent)
        return principal, token

    def authenticate_header(self, request) -> str:
        return api_permissions.bearer_challenge()


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the bearer scheme in the OpenAPI schema (``/api/schema/``)."""

    target_class = BearerTokenAuthentication
    name = "agentAccessToken"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An agent's access token from /oauth/token/ (read-only, within its scopes)."}
