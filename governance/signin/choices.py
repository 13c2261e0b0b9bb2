"""Choices of this sub-app's models."""

from django.db import models


class GrantType(models.TextChoices):
    CLIENT_CREDENTIALS = "client_credentials", "Client credentials"
    TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange", "Token exchange"
    PORTAL = "portal", "Issued to a signed-in person"
    RUN = "run", "Issued to a run of the agent"
    AUTHORIZATION_CODE = "authorization_code", "Authorization code (a person's consent)"
    REFRESH_TOKEN = "refresh_token", "Refresh token"


class ActorKind(models.TextChoices):
    """Who a token speaks for (the sign-in log's "actor kind")."""

    AGENT = "agent", "Agent (its own identity)"
    USER_ACCOUNT = "user_account", "Agent running as a user account"
    ON_BEHALF_OF = "on_behalf_of", "Agent on behalf of a user"
    USER = "user", "A person (token to delegate to an agent)"
    UNKNOWN = "unknown", "Unknown client"


class SignInOutcome(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    BLOCKED = "blocked", "Blocked by conditional access"


