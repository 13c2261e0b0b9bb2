"""Enumerations of the agent registry."""

from django.db import models


class PublisherKind(models.TextChoices):
    MICROSOFT = "microsoft", "Microsoft"
    PARTNER = "partner", "Partner"
    ORGANISATION = "organisation", "Organisation"


class AgentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    ACTIVE = "active", "Active"
    DISABLED = "disabled", "Disabled"
    RETIRED = "retired", "Retired"


class IdentityType(models.TextChoices):
    AGENT_IDENTITY = "agent_identity", "Agent identity"
    USER_ACCOUNT = "user_account", "Existing user account"


class CredentialType(models.TextChoices):
    """How an agent's client authenticates at the token endpoint (docs/oauth.md, "Agents without secrets")."""

    SECRET = "secret", "Client secret"
    KEY = "key", "Key (private_key_jwt)"
    FEDERATED = "federated", "Federated credential"


class AgentScope(models.TextChoices):
    WORKSPACE = "workspace", "Workspace"
    USER = "user", "User"


class AgentKind(models.TextChoices):
    ASSISTIVE = "assistive", "Assistive"
    AUTONOMOUS = "autonomous", "Autonomous"
    CLIENT_APPLICATION = "client_application", "Client application"  # an OAuth client people sign in to (R27)


class DisabledBy(models.TextChoices):
    """Who disabled an agent: only owners may re-enable an agent an owner disabled."""

    NONE = "", "—"
    SPONSOR = "sponsor", "Sponsor"
    OWNER = "owner", "Owner"
    SYSTEM = "system", "System"


class GrantSource(models.TextChoices):
    BLUEPRINT = "blueprint", "Blueprint (automatic)"




class SponsorshipState(models.TextChoices):
    """Where a named sponsor stands (docs/sponsorship.md): only an accepted, not overdue sponsorship sponsors."""

    PENDING = "pending", "Waiting for an answer"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    EXPIRED = "expired", "Lapsed (not confirmed in time)"
    SUPERSEDED = "superseded", "Handed over"
    REMOVED = "removed", "Removed"


#: The states of the one current sponsorship a person may hold for an agent (the others are history).
SPONSORSHIP_CURRENT = (SponsorshipState.PENDING, SponsorshipState.ACCEPTED, SponsorshipState.EXPIRED)
