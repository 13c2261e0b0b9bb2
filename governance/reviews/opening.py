"""Opening an access review instance (R19): its items are fixed when it opens, each with its evidence (granted when
and by whom, its end, its last use), a recommendation from inactivity and its reviewers; the per-permission evidence
(R32) comes from ``governance.reviews.permissions``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentStatus, IdentityType, PublisherKind
from agents.models import (
    Agent,
    AgentUserObjectPermission,
    PermissionGrant,
)
from governance.access.choices import AssignmentStatus
from governance.access.ends import access_ends
from governance.access.models import Assignment
from governance.reviews.choices import (
    ReviewDecisionKind,
    ReviewerKind,
    ReviewScope,
)
from governance.reviews.models import (
    AccessReview,
    ReviewInstance,
    ReviewItem,
    ReviewItemPermission,
    ReviewItemReviewer,
)
from governance.reviews.permissions import held_permissions, item_permissions, permission_advice
from governance.reviews.selectors import BATCH, reviewer_link
from governance.usage import selectors as usage
from portal import audit, notifications, timefmt
from portal.choices import UserKind
from portal.models import User


# --- opening an instance: items and their evidence ------------------------------------------------------------------
def recommend(last_used_at: datetime | None, now: datetime, *, set_up_at: datetime | None = None) \
        -> tuple[str, str]:
    """Deny when unused for REVIEW_INACTIVE_DAYS, approve otherwise, with the reason in words (R19).

    ``last_used_at`` is the agent's last use in governance.usage's one definition (None: never used), so the
    evidence agrees with the registry and the hygiene agent; a never-used agent counts as idle since its set-up."""
    limit = settings.REVIEW_INACTIVE_DAYS
    if last_used_at is None and set_up_at is None:
        raise ValueError("An agent never used needs its set-up time to be judged.")
    reference = last_used_at if last_used_at is not None else set_up_at
    idle = max(0, (now - reference).days)
    # Times as every page writes them (portal.timefmt): the registry's "Last used" shows the same instant.
    since = (f"last use {timefmt.when(last_used_at)}" if last_used_at is not None
             else f"no recorded use since set-up on {timefmt.when(set_up_at)}")
    if reference <= now - timedelta(days=limit):
        return ReviewDecisionKind.DENY, f"Unused for {idle} days ({since}); over {limit} days counts as inactive."
    if last_used_at is None:
        return ReviewDecisionKind.APPROVE, f"Set up within the last {limit} days and not used yet ({since})."
    return ReviewDecisionKind.APPROVE, f"Used within the last {limit} days ({since})."


def _evidence_rows(campaign: AccessReview) -> Iterator[list[dict]]:
    """The scope as batches of plain dicts (one query per batch, keyset pagination)."""
    agent_user = "identity__agent_user__user_id"
    last = 0
    while True:
        if campaign.scope_kind == ReviewScope.PACKAGES:
            rows = list(Assignment.objects.filter(
                package__in=campaign.packages.all(), status__in=[AssignmentStatus.PENDING, AssignmentStatus.ACTIVE],
                pk__gt=last).order_by("pk").values(
                "pk", "agent_id", "status", "package_id", "package__name", "starts_at", "requested_at", "expires_at",
                "agent__expires_at", "requested_by__username", "first_approver__username",
                "second_approver__username",
                "agent__created_at", "agent__run_as_user_id", agent_user_id=F(f"agent__{agent_user}"))[:BATCH])
        else:
            agents = Agent.objects.filter(workspace=campaign.workspace, status=AgentStatus.ACTIVE, pk__gt=last)
            if campaign.scope_kind == ReviewScope.PARTNER_AGENTS:
                agents = agents.filter(blueprint__publisher_kind=PublisherKind.PARTNER)
            rows = list(agents.order_by("pk").values(
                "pk", "name", "identity_type", "created_at", "created_by__username", "expires_at",
                "run_as_user__username", "blueprint__display_name", "blueprint__version",
                agent__created_at=F("created_at"), agent__run_as_user_id=F("run_as_user_id"),
                agent_user_id=F(agent_user))[:BATCH])
            for row in rows:
                row["agent_id"] = row["pk"]
        if not rows:
            return
        last = rows[-1]["pk"]
        yield rows


def _grants_of(agent_ids: list[int]) -> dict[int, list[str]]:
    grants: dict[int, list[str]] = {}
    for agent_id, name in (PermissionGrant.objects.filter(identity__agent_id__in=agent_ids, ended_at__isnull=True)
                           .order_by("permission__name").values_list("identity__agent_id", "permission__name")):
        grants.setdefault(agent_id, []).append(name)
    return grants


def _people_of(agent_ids: list[int], codename: str) -> dict[int, list[int]]:
    people: dict[int, list[int]] = {}
    for agent_id, user_id in (AgentUserObjectPermission.objects.filter(
            content_object_id__in=agent_ids, permission__codename=codename, user__is_active=True,
            user__kind=UserKind.HUMAN).values_list("content_object_id", "user_id")):
        people.setdefault(agent_id, []).append(user_id)
    return people


def _item_for(campaign: AccessReview, instance: ReviewInstance, row: dict, grants: dict, used: dict,
              now: datetime) -> ReviewItem:
    last_used = used.get(row["agent_id"])  # None: never used (the item says so, as the registry does)
    recommendation, reason = recommend(last_used, now, set_up_at=row["agent__created_at"])
    if campaign.scope_kind == ReviewScope.PACKAGES:
        by = [f"requested by {row['requested_by__username'] or 'the system'}"]
        approvers = [n for n in (row["first_approver__username"], row["second_approver__username"]) if n]
        if approvers:
            by.append(f"approved by {' and '.join(approvers)}")
        pending = " (request pending)" if row["status"] == AssignmentStatus.PENDING else ""
        return ReviewItem(instance=instance, agent_id=row["agent_id"], assignment_id=row["pk"],
                          access=f"Access package {row['package__name']}{pending}",
                          granted_at=row["starts_at"] or row["requested_at"], granted_by=", ".join(by),
                          ends_at=access_ends(row["expires_at"], row["agent__expires_at"]), last_used_at=last_used,
                          recommendation=recommendation, recommendation_reason=reason)
    if row["identity_type"] == IdentityType.USER_ACCOUNT:
        access = f"Runs as user {row['run_as_user__username']} ({row['blueprint__display_name']} v" \
                 f"{row['blueprint__version']})"
    else:
        names = grants.get(row["pk"], [])
        access = f"Agent identity with {len(names)} permission(s): {', '.join(names) or 'none'}"
    return ReviewItem(instance=instance, agent_id=row["pk"], access=access[:500], granted_at=row["created_at"],
                      granted_by=f"set up by {row['created_by__username'] or 'the system'}",
                      ends_at=row["expires_at"], last_used_at=last_used, recommendation=recommendation,
                      recommendation_reason=reason)


def _create_items(campaign: AccessReview, instance: ReviewInstance, now: datetime) -> tuple[int, set[int]]:
    """Items in batches: per batch one scope query, one for reviewers (and grants), one for the agents' last use
    (governance.usage), one for the permissions held, three for their use (``usage.permission_evidence``), three
    bulk inserts."""
    since = instance.evidence_since
    named = [u.pk for u in campaign.named_reviewers.filter(is_active=True, kind=UserKind.HUMAN)]
    codename = {ReviewerKind.SPONSORS: agent_policy.SPONSOR_AGENT, ReviewerKind.OWNERS: agent_policy.OWN_AGENT}
    fallback = campaign.fallback_reviewer
    fallback_id = fallback.pk if fallback is not None and fallback.is_active else None
    total, reviewer_ids = 0, set()
    for rows in _evidence_rows(campaign):
        agent_ids = sorted({row["agent_id"] for row in rows})
        people = (_people_of(agent_ids, codename[campaign.reviewer_kind])
                  if campaign.reviewer_kind in codename else {})
        grants = _grants_of(agent_ids) if campaign.scope_kind != ReviewScope.PACKAGES else {}
        used = usage.last_used(agent_ids)
        items = [_item_for(campaign, instance, row, grants, used, now) for row in rows]
        held = held_permissions(campaign, rows, grants, now)
        names: dict[int, set[str]] = {}
        for row, permissions in zip(rows, held, strict=True):
            names.setdefault(row["agent_id"], set()).update(name for name, _, _ in permissions)
        evidence = {agent_id: {e.permission: e for e in found}
                    for agent_id, found in usage.permission_evidence(names, since).items()}
        permission_rows = []
        for item, row, permissions in zip(items, rows, held, strict=True):
            item.permission_rows = item_permissions(permissions, evidence.get(row["agent_id"], {}))
            item.permission_advice = permission_advice(item.permission_rows, since)
        ReviewItem.objects.bulk_create(items, batch_size=BATCH)
        for item in items:
            for permission in item.permission_rows:
                permission.item_id = item.pk
                permission_rows.append(permission)
        ReviewItemPermission.objects.bulk_create(permission_rows, batch_size=BATCH)
        links = []
        for item, row in zip(items, rows, strict=True):
            subjects = {row["agent__run_as_user_id"], row["agent_user_id"]}
            chosen = [u for u in (named or people.get(row["agent_id"], [])) if u not in subjects]
            if not chosen and fallback_id is not None and fallback_id not in subjects:
                chosen = [fallback_id]  # nobody else may review it
            links.extend(ReviewItemReviewer(item_id=item.pk, reviewer_id=u, instance=instance) for u in chosen)
            reviewer_ids.update(chosen)
        ReviewItemReviewer.objects.bulk_create(links, batch_size=BATCH * 2)
        total += len(items)
    return total, reviewer_ids


@transaction.atomic
def review_instance_open(*, campaign: AccessReview, starts_at: datetime, now: datetime | None = None,
                         actor: User | None = None) -> ReviewInstance | None:
    """Open the instance of the period starting at ``starts_at`` and fix its items with their evidence (R19).

    The campaign row is locked and the (campaign, starts_at) pair is unique, so a period never opens twice;
    None when it was open already. Reviewers are told once this transaction commits.
    """
    now = now or timezone.now()
    campaign = AccessReview.objects.select_for_update(of=("self",)).select_related(
        "workspace", "fallback_reviewer").get(pk=campaign.pk)
    if ReviewInstance.objects.filter(campaign=campaign, starts_at=starts_at).exists():
        return None
    instance = ReviewInstance.objects.create(campaign=campaign, starts_at=starts_at,
                                             ends_at=starts_at + timedelta(days=campaign.duration_days),
                                             evidence_since=now - timedelta(days=settings.REVIEW_INACTIVE_DAYS))
    count, reviewer_ids = _create_items(campaign, instance, now)
    audit.record(actor=actor, action="review.open", target=instance, workspace=campaign.workspace,
                 after={"campaign": campaign.name, "starts_at": instance.starts_at, "ends_at": instance.ends_at,
                        "items": count, "reviewers": len(reviewer_ids)})
    notifications.notify(recipients=User.objects.filter(pk__in=reviewer_ids).order_by("pk"),
                         subject=f"Access review: {campaign.name}",
                         body=f"Some agents' access waits for your review until {instance.ends_at:%Y-%m-%d %H:%M} "
                              f"UTC. Approve, deny or say you don't know; the recommendation says why.",
                         link=reviewer_link(instance))
    return instance
