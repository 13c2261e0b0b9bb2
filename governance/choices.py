from django.db import models


class ApprovalStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXPIRED = "expired", "Expired"


class Requestors(models.TextChoices):
    SPONSORS = "sponsors", "The agent's sponsors"
    OWNERS = "owners", "The agent's owners"
    SPONSORS_AND_OWNERS = "sponsors_and_owners", "Sponsors and owners"


class ApproverKind(models.TextChoices):
    NONE = "none", "No approval"
    NAMED = "named", "Named people"
    GLOBAL_ADMINISTRATORS = "global_administrators", "Global Administrators"
    WORKSPACE_OWNERS = "workspace_owners", "The workspace's owners"


class DurationKind(models.TextChoices):
    FIXED_END = "fixed_end", "Until a fixed date"
    DAYS = "days", "A number of days"
    HOURS = "hours", "A number of hours"


class AssignmentStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"
    DENIED = "denied", "Denied"
    REQUEST_EXPIRED = "request_expired", "Request expired"


class ReviewScope(models.TextChoices):
    PACKAGES = "packages", "Assignments of access packages"
    WORKSPACE_AGENTS = "workspace_agents", "All agents of the workspace"
    PARTNER_AGENTS = "partner_agents", "All partner agents of the workspace"


class ReviewerKind(models.TextChoices):
    SPONSORS = "sponsors", "Each agent's sponsors"
    OWNERS = "owners", "Each agent's owners"
    NAMED = "named", "Named people"


class ReviewRecurrence(models.TextChoices):
    ONCE = "once", "One-off"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"
    QUARTERLY = "quarterly", "Quarterly"


class ReviewNoResponse(models.TextChoices):
    KEEP = "keep", "Keep the access"
    REMOVE = "remove", "Remove the access"
    RECOMMENDATION = "recommendation", "Follow the recommendation"


class ReviewInstanceStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    APPLIED = "applied", "Results applied"


class ReviewDecisionKind(models.TextChoices):
    APPROVE = "approve", "Approve"
    DENY = "deny", "Deny"
    DONT_KNOW = "dont_know", "Don't know"


class PolicyState(models.TextChoices):
    ON = "on", "On"
    REPORT_ONLY = "report_only", "Report-only"
    OFF = "off", "Off"


class PolicyGrant(models.TextChoices):
    BLOCK = "block", "Block"
    ALLOW = "allow", "Allow only when the conditions hold"


class RiskLevel(models.TextChoices):
    NONE = "none", "None"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


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
