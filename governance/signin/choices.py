"""Choices of this sub-app's models."""

from django.db import models


class GrantType(models.TextChoices):
    CLIENT_CREDENTIALS = "client_credentials", "Client credentials"
    TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange", "Token exchange"
    PORTAL = "portal", "Issued to a signed-in person"
    RUN = "run", "Issued to a run of the agent"


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


class DetectionKind(models.TextChoices):
    NEW_SCOPE = "new_scope", "Scope never requested before"
    REQUEST_BURST = "request_burst", "Burst of token requests"
    FAILED_CREDENTIALS = "failed_credentials", "Repeated failed client authentication"
    ORPHANED_USE = "orphaned_use", "Used while orphaned (no sponsor)"
    ADMIN_CONFIRMED = "admin_confirmed", "Confirmed compromised by an administrator"


class DetectionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CONFIRMED_COMPROMISED = "confirmed_compromised", "Confirmed compromised"
    CONFIRMED_SAFE = "confirmed_safe", "Confirmed safe"
    DISMISSED = "dismissed", "Dismissed"
