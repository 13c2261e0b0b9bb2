"""Access reviews (R19): who may manage a campaign, whose access an item is, and the reads of the pages, the API
and the header counter (campaigns visible, inboxes, progress, items with the agents' credential types, results)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, Max, OuterRef, Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents.choices import AgentStatus, CredentialType
from agents.models import (
    Agent,
    AgentIdentity,
    Credential,
    FederatedCredential,
    KeyCredential,
)
from governance.reviews.choices import (
    ReviewDecisionKind,
    ReviewInstanceStatus,
)
from governance.reviews.models import (
    AccessReview,
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
    ReviewItemReviewer,
)
from portal import rbac
from portal.models import User, Workspace

BATCH = 2000  # rows per keyset page and per bulk statement

# --- who may do what -------------------------------------------------------------------------------------------
def may_manage(user, campaign: AccessReview) -> bool:
    """Create, close early and read the results: the owners of the campaign's workspace (inherited ones too)."""
    return rbac.has_workspace_perm(user, campaign.workspace, rbac.MANAGE_MEMBERS)


def require_manager(actor: User | None, workspace: Workspace) -> None:
    if actor is not None and not rbac.has_workspace_perm(actor, workspace, rbac.MANAGE_MEMBERS):
        raise PermissionDenied("Only the workspace's owners manage its access reviews.")


def subject_ids(agent: Agent) -> set[int]:
    """The people whose own access an item about ``agent`` is: the user it runs as, and its agent user."""
    ids = set(User.objects.filter(agent_user_of__identity__agent=agent).values_list("pk", flat=True))
    return ids | ({agent.run_as_user_id} if agent.run_as_user_id else set())


# --- selectors -------------------------------------------------------------------------------------------------
def reviews_visible_to(user) -> QuerySet[AccessReview]:
    """Campaigns of the workspaces the user sees, and those in which the user reviews something."""
    if not user.is_authenticated or not user.is_active:
        return AccessReview.objects.none()
    reviewing = ReviewItemReviewer.objects.filter(reviewer=user).values("instance__campaign_id")
    return AccessReview.objects.filter(Q(workspace__in=rbac.workspaces_visible_to(user).values("pk"))
                                       | Q(pk__in=reviewing)).select_related("workspace")


def decided_by(user) -> Exists:
    return Exists(ReviewDecision.objects.filter(item=OuterRef("item"), reviewer=user))


def open_item_count(user) -> int:
    """How many items wait for the user's decision in open instances: one COUNT over (reviewer, instance)."""
    return (ReviewItemReviewer.objects.filter(reviewer=user, instance__status=ReviewInstanceStatus.OPEN)
            .exclude(decided_by(user)).count())


def inbox(user) -> list[dict]:
    """The user's open instances, each with its open and total item counts (one query)."""
    rows = (ReviewItemReviewer.objects.filter(reviewer=user, instance__status=ReviewInstanceStatus.OPEN)
            .values("instance_id", "instance__campaign_id", "instance__campaign__name", "instance__ends_at")
            .annotate(total=Count("pk", distinct=True),
                      decided=Count("item__decisions", filter=Q(item__decisions__reviewer=user), distinct=True))
            .order_by("instance__ends_at", "instance_id"))
    return [{"instance_id": r["instance_id"], "campaign_id": r["instance__campaign_id"],
             "name": r["instance__campaign__name"], "ends_at": r["instance__ends_at"], "total": r["total"],
             "open": r["total"] - r["decided"]} for r in rows]


def open_instance(campaign: AccessReview) -> ReviewInstance | None:
    return campaign.instances.filter(status=ReviewInstanceStatus.OPEN).order_by("-starts_at").first()


def instances_with_progress(campaigns: Iterable[AccessReview]) -> dict[int, ReviewInstance]:
    """The open instance of each campaign with ``total`` and ``decided`` item counts (one query)."""
    rows = (ReviewInstance.objects.filter(campaign__in=list(campaigns), status=ReviewInstanceStatus.OPEN)
            .annotate(total=Count("items", distinct=True),
                      decided=Count("items", filter=Q(items__decisions__isnull=False), distinct=True))
            .order_by("starts_at"))
    return {row.campaign_id: row for row in rows}


def campaigns_page_queryset(user) -> QuerySet[AccessReview]:
    return reviews_visible_to(user).annotate(last_closed=Max("instances__closed_at")).order_by("name", "pk")


def items_of_reviewer(user, instance: ReviewInstance) -> QuerySet[ReviewItem]:
    """The user's items in the instance, each with ``mine`` (their decision, as a one-element list or empty)."""
    mine = ReviewItemReviewer.objects.filter(reviewer=user, instance=instance).values("item_id")
    return (ReviewItem.objects.filter(instance=instance, pk__in=mine).select_related("agent", "assignment__package")
            .prefetch_related(Prefetch("decisions", queryset=ReviewDecision.objects.filter(reviewer=user),
                                       to_attr="mine"), "permissions").order_by("agent__name", "pk"))


def credential_types(agent_ids: Iterable[int], now: datetime | None = None) -> dict[int, list[str]]:
    """How each agent can authenticate now (R28), as reviewers see it: ``secret``, ``key``, ``federated`` in that
    order, the same answer as ``agents.trust.credential_types`` for one agent (an active secret, an active key, a
    federated credential of its own or its blueprint's; nothing for a retired agent or one without a client
    registration). Four queries whatever the number of agents."""
    ids = {agent_id for agent_id in agent_ids if agent_id is not None}
    if not ids:
        return {}
    now = now or timezone.now()
    registered = {agent_id: blueprint_id for agent_id, blueprint_id in AgentIdentity.objects.filter(
        agent_id__in=ids).exclude(agent__status=AgentStatus.RETIRED).values_list("agent_id", "agent__blueprint_id")}
    if not registered:
        return {agent_id: [] for agent_id in ids}
    found: dict[int, set[str]] = {agent_id: set() for agent_id in registered}
    for agent_id in Credential.objects.filter(identity__agent_id__in=list(registered), revoked_at__isnull=True,
                                              expires_at__gt=now).values_list("identity__agent_id", flat=True):
        found[agent_id].add(CredentialType.SECRET)
    for agent_id in KeyCredential.objects.filter(identity__agent_id__in=list(registered), revoked_at__isnull=True,
                                                 expires_at__gt=now).values_list("identity__agent_id", flat=True):
        found[agent_id].add(CredentialType.KEY)
    blueprints = set(registered.values())
    for agent_id, blueprint_id in FederatedCredential.objects.filter(
            Q(agent_id__in=list(registered)) | Q(blueprint_id__in=blueprints), revoked_at__isnull=True) \
            .values_list("agent_id", "blueprint_id").distinct():
        owners = [agent_id] if agent_id is not None else [a for a, b in registered.items() if b == blueprint_id]
        for owner in owners:
            found[owner].add(CredentialType.FEDERATED)
    order = list(CredentialType.values)
    return {agent_id: sorted(found.get(agent_id, ()), key=order.index) for agent_id in ids}


def with_credential_types(items: Iterable[ReviewItem]) -> Iterable[ReviewItem]:
    """Set ``credential_types`` (a list of ``CredentialType`` values) on each item of a page (four queries)."""
    items = list(items)
    types = credential_types(item.agent_id for item in items)
    for item in items:
        item.credential_types = types.get(item.agent_id, [])
    return items


def results(instance: ReviewInstance) -> dict:
    """Counts for the results page: items, reviewed, and (once closed) kept, removed, by default, applied."""
    decided = Exists(ReviewDecision.objects.filter(item=OuterRef("pk")))
    counts = ReviewItem.objects.filter(instance=instance).aggregate(
        total=Count("pk"), reviewed=Count("pk", filter=Q(decided)),
        kept=Count("pk", filter=Q(final_decision=ReviewDecisionKind.APPROVE)),
        removed=Count("pk", filter=Q(final_decision=ReviewDecisionKind.DENY)),
        by_default=Count("pk", filter=Q(final_source="default")),
        applied=Count("pk", filter=Q(applied_at__isnull=False)),
        recommended_deny=Count("pk", filter=Q(recommendation=ReviewDecisionKind.DENY)))
    decisions = dict(ReviewDecision.objects.filter(item__instance=instance).values_list("decision")
                     .annotate(n=Count("pk")).values_list("decision", "n"))
    counts.update({f"decisions_{kind}": decisions.get(kind, 0) for kind in ReviewDecisionKind.values})
    return counts


def reviewer_link(instance: ReviewInstance) -> str:
    return reverse("review-mine", args=[instance.campaign_id])


# --- the header counter ------------------------------------------------------------------------------------------
def header_count(user) -> tuple[str, str, int] | None:
    return "Reviews", reverse("review-list"), open_item_count(user)
