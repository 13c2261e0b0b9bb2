"""Access reviews (R19): campaigns in which sponsors, owners or named people confirm or remove agent access.

A campaign (``AccessReview``) runs once or every week, month or quarter. Each period is a ``ReviewInstance`` whose
items are fixed when it opens, each with its evidence (granted when and by whom, its end, its last use) and a
recommendation from inactivity. Reviewers approve, deny (with a justification) or say they don't know, and change
their mind until the instance ends; nobody reviews their own access. When the instance closes, each item is
resolved — a denial by any reviewer removes, otherwise an approval keeps, otherwise the campaign's no-response
default — and, if the campaign says so, denials are carried out through the same services as a manual action
(``access_packages.assignments_revoke_batch`` for package scopes, ``registry.agent_disable`` for agent scopes),
each audited. ``run_access_reviews`` opens, reminds, closes and applies; every step is safe to run twice.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Prefetch, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents import policy as agent_policy
from agents import registry
from agents.choices import AgentStatus, CredentialType, IdentityType, PublisherKind
from agents.models import (
    Agent,
    AgentIdentity,
    AgentUserObjectPermission,
    Credential,
    FederatedCredential,
    KeyCredential,
    PermissionGrant,
)
from governance.access import services as access_packages
from governance.access.choices import AssignmentStatus
from governance.access.ends import access_ends
from governance.access.models import AccessPackage, Assignment
from governance.reviews.choices import (
    PermissionAdvice,
    PermissionDecision,
    PermissionSource,
    ReviewDecisionKind,
    ReviewerKind,
    ReviewInstanceStatus,
    ReviewNoResponse,
    ReviewRecurrence,
    ReviewScope,
)
from governance.reviews.models import (
    AccessReview,
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
    ReviewItemPermission,
    ReviewItemReviewer,
)
from governance.usage import selectors as usage
from portal import audit, csvexport, jobs, notifications, rbac, timefmt
from portal.choices import UserKind
from portal.models import User, Workspace

BATCH = 2000
MONTHS_PER_PERIOD = {ReviewRecurrence.MONTHLY: 1, ReviewRecurrence.QUARTERLY: 3}
MAX_DAYS = {ReviewRecurrence.WEEKLY: 7, ReviewRecurrence.MONTHLY: 28, ReviewRecurrence.QUARTERLY: 90}
REMINDERS = ("halfway", "last_day")


# --- who may do what -------------------------------------------------------------------------------------------
def may_manage(user, campaign: AccessReview) -> bool:
    """Create, close early and read the results: the owners of the campaign's workspace (inherited ones too)."""
    return rbac.has_workspace_perm(user, campaign.workspace, rbac.MANAGE_MEMBERS)


def _require_manager(actor: User | None, workspace: Workspace) -> None:
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


def _decided_by(user) -> Exists:
    return Exists(ReviewDecision.objects.filter(item=OuterRef("item"), reviewer=user))


def open_item_count(user) -> int:
    """How many items wait for the user's decision in open instances: one COUNT over (reviewer, instance)."""
    return (ReviewItemReviewer.objects.filter(reviewer=user, instance__status=ReviewInstanceStatus.OPEN)
            .exclude(_decided_by(user)).count())


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


CSV_COLUMNS = ("item", "agent", "access", "granted_at", "granted_by", "ends_at", "last_used_at", "recommendation",
               "recommendation_reason", "decisions", "final_decision", "final_source", "applied_at", "applied_result",
               "credential_types")


def results_csv_rows(instance: ReviewInstance) -> Iterator[list]:
    """The header and one row per item, read in keyset pages with their decisions and the agents' credential types
    now (``credential_types``, space-separated; six queries per page)."""
    yield list(CSV_COLUMNS)
    last = 0
    while True:
        batch = list(ReviewItem.objects.filter(instance=instance, pk__gt=last).order_by("pk")
                     .values_list("pk", "agent__name", "access", "granted_at", "granted_by", "ends_at",
                                  "last_used_at", "recommendation", "recommendation_reason", "final_decision",
                                  "final_source", "applied_at", "applied_result", "agent_id")[:BATCH])
        if not batch:
            return
        last = batch[-1][0]
        decisions: dict[int, list[str]] = {}
        for item_id, username, decision, justification in (
                ReviewDecision.objects.filter(item_id__in=[row[0] for row in batch]).order_by("item_id", "pk")
                .values_list("item_id", "reviewer__username", "decision", "justification")):
            decisions.setdefault(item_id, []).append(f"{username}: {decision}" + (f" ({justification})"
                                                                                   if justification else ""))
        types = credential_types(row[-1] for row in batch)
        for row in batch:
            yield [*row[:9], "; ".join(decisions.get(row[0], [])), *row[9:-1], " ".join(types.get(row[-1], []))]


def results_csv_stream(instance: ReviewInstance) -> Iterator[str]:
    """The results as CSV lines, through the portal's one CSV writer (names and justifications people typed cannot
    start a formula in the reader's spreadsheet)."""
    return csvexport.csv_lines(results_csv_rows(instance))


# --- campaigns ---------------------------------------------------------------------------------------------------
def _human_reviewers(users: Iterable[User], what: str) -> list[User]:
    users = list(users)
    bad = sorted(u.username for u in users if not u.is_active or u.kind != UserKind.HUMAN)
    if bad:
        raise ValidationError(f"{what} must be active people: {', '.join(bad)}.")
    return users


@transaction.atomic
def review_create(*, actor: User | None, workspace: Workspace, name: str, scope_kind: str,
                  reviewer_kind: str, starts_at: datetime, duration_days: int,
                  recurrence: str = ReviewRecurrence.ONCE, packages: Iterable[AccessPackage] = (),
                  named_reviewers: Iterable[User] = (), fallback_reviewer: User | None = None,
                  auto_apply: bool = True, no_response: str = ReviewNoResponse.RECOMMENDATION,
                  description: str = "", now: datetime | None = None) -> AccessReview:
    """Create a campaign (owners of the workspace, R19); a campaign whose first period has begun opens at once."""
    _require_manager(actor, workspace)
    now = now or timezone.now()
    name = name.strip()
    problems = []
    if not name:
        problems.append("Give the review a name.")
    elif AccessReview.objects.filter(workspace=workspace, name=name).exists():
        problems.append(f"A review called '{name}' already exists in {workspace.name}.")
    if duration_days is None or duration_days < 1:
        problems.append("A review lasts at least one day.")
    elif recurrence in MAX_DAYS and duration_days > MAX_DAYS[recurrence]:
        problems.append(f"A {recurrence} review lasts at most {MAX_DAYS[recurrence]} days, so periods never overlap.")
    packages = list(packages)
    if scope_kind == ReviewScope.PACKAGES and not packages:
        problems.append("Choose the access packages whose assignments are reviewed.")
    if any(p.workspace_id != workspace.pk for p in packages):
        problems.append("The packages must belong to the review's workspace.")
    named = _human_reviewers(named_reviewers, "Named reviewers")
    if reviewer_kind == ReviewerKind.NAMED and not named:
        problems.append("Name at least one reviewer.")
    if fallback_reviewer is not None:
        _human_reviewers([fallback_reviewer], "The fallback reviewer")
    if scope_kind not in ReviewScope.values or reviewer_kind not in ReviewerKind.values \
            or recurrence not in ReviewRecurrence.values or no_response not in ReviewNoResponse.values:
        problems.append("Choose the scope, reviewers, recurrence and no-response default from the lists.")
    if problems:
        raise ValidationError(problems)
    campaign = AccessReview.objects.create(
        workspace=workspace, name=name, description=description, scope_kind=scope_kind, reviewer_kind=reviewer_kind,
        fallback_reviewer=fallback_reviewer, recurrence=recurrence, starts_at=starts_at, duration_days=duration_days,
        auto_apply=auto_apply, no_response=no_response, created_by=actor)
    campaign.packages.set(packages if scope_kind == ReviewScope.PACKAGES else [])
    campaign.named_reviewers.set(named if reviewer_kind == ReviewerKind.NAMED else [])
    audit.record(actor=actor, action="review.create", target=campaign, workspace=workspace, after=_snapshot(campaign))
    start = current_period(campaign, now)
    if start is not None:
        review_instance_open(campaign=campaign, starts_at=start, now=now, actor=actor)
    return campaign


def _snapshot(campaign: AccessReview) -> dict:
    return {"name": campaign.name, "scope": campaign.scope_kind, "reviewers": campaign.reviewer_kind,
            "packages": sorted(p.name for p in campaign.packages.all()),
            "named_reviewers": sorted(u.username for u in campaign.named_reviewers.all()),
            "fallback_reviewer": campaign.fallback_reviewer.username if campaign.fallback_reviewer else None,
            "recurrence": campaign.recurrence, "starts_at": campaign.starts_at,
            "duration_days": campaign.duration_days, "auto_apply": campaign.auto_apply,
            "no_response": campaign.no_response}


# --- periods -----------------------------------------------------------------------------------------------------
def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def period_start(campaign: AccessReview, index: int) -> datetime:
    if campaign.recurrence == ReviewRecurrence.WEEKLY:
        return campaign.starts_at + timedelta(weeks=index)
    if campaign.recurrence in MONTHS_PER_PERIOD:
        return _add_months(campaign.starts_at, index * MONTHS_PER_PERIOD[campaign.recurrence])
    return campaign.starts_at


def current_period(campaign: AccessReview, now: datetime) -> datetime | None:
    """The start of the campaign's period running at ``now``; None before the start, between periods, or after a
    one-off review's end. Only the running period opens: a period missed entirely is not reviewed late."""
    if now < campaign.starts_at:
        return None
    if campaign.recurrence == ReviewRecurrence.WEEKLY:
        index = (now - campaign.starts_at) // timedelta(weeks=1)
    elif campaign.recurrence in MONTHS_PER_PERIOD:
        step = MONTHS_PER_PERIOD[campaign.recurrence]
        index = ((now.year - campaign.starts_at.year) * 12 + now.month - campaign.starts_at.month) // step
        if period_start(campaign, index) > now:
            index -= 1
    else:
        index = 0
    start = period_start(campaign, index)
    return start if start + timedelta(days=campaign.duration_days) > now else None


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


# --- evidence of use per permission (docs/design.md, R32) ---------------------------------------------------------
Held = tuple[str, str, int | None]  # (permission, source, assignment id)


def _held_permissions(campaign: AccessReview, rows: list[dict], grants: dict[int, list[str]],
                      now: datetime) -> list[list[Held]]:
    """What each row's item is about, per permission (one query): a package item, its package's permissions; an
    agent item, the permissions that come with the agent and those of its active package assignments."""
    if campaign.scope_kind == ReviewScope.PACKAGES:
        of_package: dict[int, list[str]] = {}
        for package_id, name in (AccessPackage.permissions.through.objects
                                 .filter(accesspackage_id__in={row["package_id"] for row in rows})
                                 .values_list("accesspackage_id", "permission__name")):
            of_package.setdefault(package_id, []).append(name)
        return [[(name, PermissionSource.PACKAGE, row["pk"]) for name in of_package.get(row["package_id"], [])]
                for row in rows]
    packaged: dict[int, list[Held]] = {}
    for agent_id, assignment_id, name in (
            Assignment.objects.filter(agent_id__in=[row["pk"] for row in rows], status=AssignmentStatus.ACTIVE,
                                      expires_at__gt=now, package__permissions__isnull=False)
            .values_list("agent_id", "pk", "package__permissions__name")):
        packaged.setdefault(agent_id, []).append((name, PermissionSource.PACKAGE, assignment_id))
    return [[(name, PermissionSource.BLUEPRINT, None) for name in grants.get(row["pk"], [])]
            + packaged.get(row["pk"], []) for row in rows]


def _names(names: list[str]) -> str:
    return ", ".join(sorted(set(names)))


def permission_advice(rows: list[ReviewItemPermission], since: datetime) -> str:
    """The per-permission recommendation in plain words: "Keep X, Y, Z; remove U, V." and what cannot be removed."""
    keep = [r.permission for r in rows if r.advice == PermissionAdvice.KEEP]
    remove = [r.permission for r in rows if r.advice == PermissionAdvice.REMOVE]
    fixed = [r.permission for r in rows if r.advice == PermissionAdvice.RETIRE_OR_KEEP]
    if not rows:
        return "This access carries no permissions."
    parts = ([f"keep {_names(keep)}"] if keep else []) + ([f"remove {_names(remove)}"] if remove else [])
    words = []
    if parts:
        sentence = "; ".join(parts)
        words.append(f"{sentence[0].upper()}{sentence[1:]}.")
    if fixed:
        one = len(set(fixed)) == 1
        words.append(f"{_names(fixed)} {'is' if one else 'are'} not used but {'comes' if one else 'come'} with the "
                     f"agent and cannot be removed on {'its' if one else 'their'} own: keep the agent or retire it.")
    packages = {r.assignment_id for r in rows if r.advice == PermissionAdvice.REMOVE}
    partial = [a for a in packages if any(r.assignment_id == a and r.advice == PermissionAdvice.KEEP for r in rows)]
    if partial:
        words.append("An access package is held whole: its assignment ends only when all of its permissions are "
                     "removed; ask the package's owners to narrow it.")
    words.append(f"Use counted since {timefmt.when(since)}.")
    return " ".join(words)


def _permission_rows(held: list[Held], evidence: dict[str, usage.PermissionEvidence]) -> list[ReviewItemPermission]:
    rows = []
    for name, source, assignment_id in sorted(set(held), key=lambda h: (h[0], h[1], h[2] or 0)):
        found = evidence[name]
        if found.used:
            advice = PermissionAdvice.KEEP
        elif source == PermissionSource.PACKAGE:
            advice = PermissionAdvice.REMOVE
        else:
            advice = PermissionAdvice.RETIRE_OR_KEEP
        rows.append(ReviewItemPermission(permission=name, source=source, assignment_id=assignment_id,
                                         last_used_at=found.last_used_at, used=found.used, advice=advice))
    return rows


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
        held = _held_permissions(campaign, rows, grants, now)
        names: dict[int, set[str]] = {}
        for row, permissions in zip(rows, held, strict=True):
            names.setdefault(row["agent_id"], set()).update(name for name, _, _ in permissions)
        evidence = {agent_id: {e.permission: e for e in found}
                    for agent_id, found in usage.permission_evidence(names, since).items()}
        permission_rows = []
        for item, row, permissions in zip(items, rows, held, strict=True):
            item.permission_rows = _permission_rows(permissions, evidence.get(row["agent_id"], {}))
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


def _reviewer_link(instance: ReviewInstance) -> str:
    return reverse("review-mine", args=[instance.campaign_id])


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
                         link=_reviewer_link(instance))
    return instance


# --- decisions ---------------------------------------------------------------------------------------------------
def _decidable(instance: ReviewInstance, now: datetime) -> None:
    if instance.status != ReviewInstanceStatus.OPEN or instance.ends_at <= now:
        raise ValidationError("This review has ended; its decisions can no longer change.", code="already_decided")


def _require_reviewer(actor: User, item: ReviewItem) -> None:
    """Only the item's reviewers decide, never about their own access, and only while its review is open."""
    if actor.pk in subject_ids(item.agent):
        raise PermissionDenied("You cannot review your own access.")
    if not ReviewItemReviewer.objects.filter(item=item, reviewer=actor).exists():
        raise PermissionDenied("You are not a reviewer of this item.")
    _decidable(item.instance, timezone.now())


def _item_to_decide(actor: User, item: ReviewItem) -> ReviewItem:
    """The item, locked, once ``_require_reviewer`` lets the actor decide on it."""
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related(
        "instance__campaign__workspace", "agent").get(pk=item.pk)
    _require_reviewer(actor, item)
    return item


@transaction.atomic
def review_decide(*, actor: User, item: ReviewItem, decision: str, justification: str = "") -> ReviewDecision:
    """A reviewer approves, denies (with a justification) or doesn't know; they may change it until the end.

    Nobody decides about their own access (the user the agent runs as, or its agent user).
    """
    item = _item_to_decide(actor, item)
    if decision not in ReviewDecisionKind.values:
        raise ValidationError("Decide approve, deny or don't know.")
    justification = justification.strip()
    if decision == ReviewDecisionKind.DENY and not justification:
        raise ValidationError("Give a justification for a denial.")
    existing = ReviewDecision.objects.filter(item=item, reviewer=actor).first()
    before = {"decision": existing.decision, "justification": existing.justification} if existing else None
    if existing is None:
        existing = ReviewDecision.objects.create(item=item, reviewer=actor, decision=decision,
                                                 justification=justification)
    else:
        existing.decision, existing.justification, existing.decided_at = decision, justification, timezone.now()
        existing.save(update_fields=["decision", "justification", "decided_at"])
    audit.record(actor=actor, action="review.decision_change" if before else "review.decide", target=item,
                 workspace=item.instance.campaign.workspace, before=before,
                 after={"decision": decision, "justification": justification, "agent": item.agent.name,
                        "access": item.access})
    return existing


@transaction.atomic
def review_accept_recommendations(*, actor: User, instance: ReviewInstance) -> int:
    """Decide each of the actor's undecided items as recommended (one audit event each). Returns how many."""
    instance = ReviewInstance.objects.select_for_update(of=("self",)).select_related("campaign__workspace").get(
        pk=instance.pk)
    _decidable(instance, timezone.now())
    mine = ReviewItemReviewer.objects.filter(reviewer=actor, instance=instance).exclude(_decided_by(actor))
    items = list(ReviewItem.objects.filter(pk__in=mine.values("item_id"))
                 .exclude(agent__run_as_user=actor).exclude(agent__identity__agent_user__user=actor)
                 .select_related("agent").order_by("pk"))
    now = timezone.now()
    ReviewDecision.objects.bulk_create(
        [ReviewDecision(item=item, reviewer=actor, decision=item.recommendation, decided_at=now,
                        justification=f"Accepted the recommendation: {item.recommendation_reason}")
         for item in items], batch_size=BATCH)
    audit.record_many(actor=actor, changes=[
        audit.Change("review.decide", item, instance.campaign.workspace,
                     after={"decision": item.recommendation, "accepted_recommendation": True,
                            "agent": item.agent.name, "access": item.access})
        for item in items])
    return len(items)


def _permission_for_decision(actor: User, permission: ReviewItemPermission) -> ReviewItemPermission:
    """The permission row locked, after the checks of ``review_decide``: a reviewer of its item, not about their own
    access, while the instance is open."""
    permission = ReviewItemPermission.objects.select_for_update(of=("self",)).select_related(
        "item__instance__campaign__workspace", "item__agent").get(pk=permission.pk)
    item = permission.item
    _require_reviewer(actor, item)
    return permission


def _set_permission_decisions(actor: User, rows: list[ReviewItemPermission], decision: str) -> list[dict]:
    now, changes = timezone.now(), []
    for row in rows:
        if row.decision == decision:
            continue
        changes.append({"permission": row.permission, "before": row.decision or None, "after": decision})
        row.decision, row.decided_by, row.decided_at = decision, actor, now
    ReviewItemPermission.objects.bulk_update(rows, ["decision", "decided_by", "decided_at"])
    return changes


@transaction.atomic
def review_permission_decide(*, actor: User, permission: ReviewItemPermission, decision: str) \
        -> ReviewItemPermission:
    """A reviewer keeps or removes one permission of an item (docs/design.md, R32), changeable until the end.

    Only a permission from an access package can be removed: one that comes with the agent's definition (R3) ends
    only when the agent is retired, so removing it is refused with that advice. Removed permissions are carried out
    when the results are applied: an assignment ends once all of its package's permissions are removed."""
    permission = _permission_for_decision(actor, permission)
    if decision not in PermissionDecision.values:
        raise ValidationError("Decide keep or remove.")
    if decision == PermissionDecision.REMOVE and permission.source != PermissionSource.PACKAGE:
        raise ValidationError(f"{permission.permission} comes with the agent and cannot be removed on its own: keep "
                              f"it, or deny the whole item (the agent is disabled) and retire the agent.")
    item = permission.item
    changes = _set_permission_decisions(actor, [permission], decision)
    if changes:
        audit.record(actor=actor, action="review.permission_decide", target=item,
                     workspace=item.instance.campaign.workspace,
                     before={"permission": permission.permission, "decision": changes[0]["before"]},
                     after={"permission": permission.permission, "decision": decision, "agent": item.agent.name,
                            "last_used_at": permission.last_used_at, "used": permission.used})
    return permission


@transaction.atomic
def review_permissions_accept_advice(*, actor: User, item: ReviewItem) -> int:
    """A reviewer accepts an item's per-permission recommendation: the used ones and those that come with the agent
    kept, the unused package ones removed (one audit event). Returns how many decisions changed."""
    item = _item_to_decide(actor, item)
    rows = list(ReviewItemPermission.objects.select_for_update().filter(item=item).order_by("pk"))
    changes = []
    for decision in PermissionDecision.values:
        chosen = [r for r in rows if (r.advice == PermissionAdvice.REMOVE) == (decision == PermissionDecision.REMOVE)]
        changes += _set_permission_decisions(actor, chosen, decision)
    if changes:
        audit.record(actor=actor, action="review.permission_decide", target=item,
                     workspace=item.instance.campaign.workspace,
                     after={"agent": item.agent.name, "accepted_recommendation": True, "changes": changes})
    return len(changes)


# --- closing and applying ----------------------------------------------------------------------------------------
def _resolve(instance: ReviewInstance) -> None:
    """Each item's final decision in four UPDATEs: a denial wins, then an approval, then the no-response default."""
    items = ReviewItem.objects.filter(instance=instance)
    decided = ReviewDecision.objects.filter(item=OuterRef("pk"))
    items.filter(Exists(decided.filter(decision=ReviewDecisionKind.DENY))).update(
        final_decision=ReviewDecisionKind.DENY, final_source="reviewer")
    items.filter(final_decision="").filter(Exists(decided.filter(decision=ReviewDecisionKind.APPROVE))).update(
        final_decision=ReviewDecisionKind.APPROVE, final_source="reviewer")
    rest = items.filter(final_decision="")
    default = instance.campaign.no_response
    if default == ReviewNoResponse.KEEP:
        rest.update(final_decision=ReviewDecisionKind.APPROVE, final_source="default")
    elif default == ReviewNoResponse.REMOVE:
        rest.update(final_decision=ReviewDecisionKind.DENY, final_source="default")
    else:
        rest.update(final_decision=F("recommendation"), final_source="default")


@transaction.atomic
def review_instance_close(*, actor: User | None, instance: ReviewInstance,
                          now: datetime | None = None) -> ReviewInstance:
    """End an instance — at its end (the job) or early (an owner) — and resolve every item's final decision.

    The status moves open → closed under a row lock, so two workers or two clicks close it once.
    """
    now = now or timezone.now()
    instance = ReviewInstance.objects.select_for_update(of=("self",)).select_related(
        "campaign__workspace").get(pk=instance.pk)
    _require_manager(actor, instance.campaign.workspace)
    if instance.status != ReviewInstanceStatus.OPEN:
        raise ValidationError("This review is already closed.", code="already_decided")
    _resolve(instance)
    instance.status, instance.closed_at, instance.closed_by = ReviewInstanceStatus.CLOSED, now, actor
    instance.save(update_fields=["status", "closed_at", "closed_by"])
    counts = results(instance)
    audit.record(actor=actor, action="review.close", target=instance, workspace=instance.campaign.workspace,
                 before={"status": ReviewInstanceStatus.OPEN},
                 after={"status": instance.status, "early": now < instance.ends_at, "items": counts["total"],
                        "kept": counts["kept"], "removed": counts["removed"], "by_default": counts["by_default"]})
    return instance


def review_instance_apply(*, instance: ReviewInstance) -> dict:
    """Carry out a closed instance's denials through the services, in batches, exactly once (R19).

    Items are locked with SKIP LOCKED and marked ``applied_at`` in the batch's transaction, so two workers share
    the work and a rerun finds nothing left. Package scopes revoke with ``assignments_revoke_batch`` (the rules
    of ``assignment_revoke``, one audit event per assignment); agent scopes disable with ``agent_disable``.
    The instance then moves closed → applied under its row lock.
    """
    campaign = AccessReview.objects.select_related("workspace").get(pk=instance.campaign_id)
    counts = {"removed": 0, "already_ended": 0}
    if not campaign.auto_apply:
        return counts
    reason = f"access review {campaign.name}: denied"
    while True:
        with transaction.atomic():
            batch = list(ReviewItem.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(instance_id=instance.pk, instance__status=ReviewInstanceStatus.CLOSED,
                                 final_decision=ReviewDecisionKind.DENY, applied_at__isnull=True)
                         .select_related("agent").order_by("pk")[:BATCH])
            if not batch:
                break
            done: set[int] = set()
            if campaign.scope_kind == ReviewScope.PACKAGES:
                revoked = set(access_packages.assignments_revoke_batch(
                    actor=None, assignment_ids=[i.assignment_id for i in batch], reason=reason))
                done = {i.pk for i in batch if i.assignment_id in revoked}
            else:
                for item in batch:
                    if item.agent.status != AgentStatus.ACTIVE:
                        continue
                    registry.agent_disable(actor=None, agent=item.agent, reason=reason)
                    done.add(item.pk)
            now = timezone.now()
            result = "revoked" if campaign.scope_kind == ReviewScope.PACKAGES else "disabled"
            ReviewItem.objects.filter(pk__in=done).update(applied_at=now, applied_result=result)
            ReviewItem.objects.filter(pk__in=[i.pk for i in batch if i.pk not in done]).update(
                applied_at=now, applied_result="already ended")
            counts["removed"] += len(done)
            counts["already_ended"] += len(batch) - len(done)
    removed, already = _apply_removed_permissions(instance, campaign)
    counts["removed"] += removed
    counts["already_ended"] += already
    with transaction.atomic():
        locked = ReviewInstance.objects.select_for_update(of=("self",)).get(pk=instance.pk)
        left = ReviewItem.objects.filter(instance=locked, final_decision=ReviewDecisionKind.DENY,
                                         applied_at__isnull=True).exists() or ReviewItemPermission.objects.filter(
            item__instance=locked, decision=PermissionDecision.REMOVE, applied_at__isnull=True).exists()
        if locked.status == ReviewInstanceStatus.CLOSED and not left:
            locked.status, locked.applied_at = ReviewInstanceStatus.APPLIED, timezone.now()
            locked.save(update_fields=["status", "applied_at"])
            audit.record(actor=None, action="review.apply", target=locked, workspace=campaign.workspace,
                         before={"status": ReviewInstanceStatus.CLOSED},
                         after={"status": locked.status, **counts})
            if campaign.created_by is not None:
                notifications.notify(recipients=[campaign.created_by], subject=f"Access review {campaign.name}: "
                                     f"results applied", body=f"{counts['removed']} access(es) removed.",
                                     link=reverse("review-results", args=[campaign.pk]))
    return counts


def _apply_removed_permissions(instance: ReviewInstance, campaign: AccessReview) -> tuple[int, int]:
    """Carry out the permissions reviewers removed (docs/design.md, R32), in batches, exactly once: an assignment
    whose package's permissions were all removed on an item ends through ``assignments_revoke_batch`` (the rules of
    ``assignment_revoke``: one audit event each, and the tokens carrying its permissions revoked); a removal that
    leaves some of the package in use is recorded as kept, since an assignment holds its package whole. Returns
    (assignments ended, already ended)."""
    reason = f"access review {campaign.name}: its permissions were removed as unused"
    ended = already = 0
    while True:
        with transaction.atomic():
            batch = list(ReviewItemPermission.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(item__instance_id=instance.pk, item__instance__status=ReviewInstanceStatus.CLOSED,
                                 decision=PermissionDecision.REMOVE, applied_at__isnull=True)
                         .order_by("pk")[:BATCH])
            if not batch:
                return ended, already
            keys = {(row.item_id, row.assignment_id) for row in batch}
            kept = set(ReviewItemPermission.objects.filter(item_id__in={k[0] for k in keys},
                                                           assignment_id__in={k[1] for k in keys})
                       .exclude(decision=PermissionDecision.REMOVE).values_list("item_id", "assignment_id"))
            whole = keys - kept
            revoked = set(access_packages.assignments_revoke_batch(
                actor=None, assignment_ids=sorted({a for _, a in whole}), reason=reason))
            now, results = timezone.now(), {}
            for row in batch:
                if (row.item_id, row.assignment_id) not in whole:
                    results[row.pk] = "kept: the access package is held whole and some of it is still used"
                elif row.assignment_id in revoked:
                    results[row.pk] = "removed: the assignment ended"
                else:
                    results[row.pk] = "already ended"
            for result in set(results.values()):
                ReviewItemPermission.objects.filter(pk__in=[pk for pk, r in results.items() if r == result]).update(
                    applied_at=now, applied_result=result)
            ended += len(revoked)
            already += len({a for _, a in whole} - revoked)


# --- the job -----------------------------------------------------------------------------------------------------
def _open_reviewer_ids(instance: ReviewInstance) -> list[int]:
    return list(ReviewItemReviewer.objects.filter(instance=instance).exclude(
        Exists(ReviewDecision.objects.filter(item=OuterRef("item"), reviewer=OuterRef("reviewer"))))
        .values_list("reviewer_id", flat=True).distinct())


def _send_reminders(now: datetime) -> int:
    """Halfway and one day before the end, once each (one notice when both are crossed at once)."""
    sent = 0
    with transaction.atomic():
        due_instances = (ReviewInstance.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=ReviewInstanceStatus.OPEN, ends_at__gt=now)
                         .select_related("campaign__workspace").order_by("pk"))
        for instance in due_instances:
            moments = {"halfway": instance.starts_at + (instance.ends_at - instance.starts_at) / 2,
                       "last_day": instance.ends_at - timedelta(days=1)}
            crossed = [name for name in REMINDERS if moments[name] <= now]
            if not crossed or set(crossed) <= set(instance.reminders_sent):
                continue
            instance.reminders_sent = sorted(set(instance.reminders_sent) | set(crossed))
            instance.save(update_fields=["reminders_sent"])
            reviewers = _open_reviewer_ids(instance)
            notifications.notify(recipients=User.objects.filter(pk__in=reviewers).order_by("pk"),
                                 subject=f"Reminder: access review {instance.campaign.name} ends "
                                         f"{instance.ends_at:%Y-%m-%d %H:%M} UTC",
                                 body="Some items still wait for your decision. Undecided items follow the "
                                      f"review's default: {instance.campaign.get_no_response_display().lower()}.",
                                 link=_reviewer_link(instance))
            audit.record(actor=None, action="review.reminder", target=instance,
                         workspace=instance.campaign.workspace,
                         after={"reminders_sent": instance.reminders_sent, "reviewers": len(reviewers)})
            sent += len(reviewers)
    return sent


def reviews_run(*, now: datetime | None = None) -> dict:
    """One pass of ``run_access_reviews`` at ``now``: open due periods, remind, close ended instances, apply."""
    now = now or timezone.now()
    counts = {"opened": 0, "reminders": 0, "closed": 0, "removed": 0}
    for campaign in AccessReview.objects.filter(active=True, starts_at__lte=now).order_by("pk"):
        start = current_period(campaign, now)
        if start is None or campaign.instances.filter(starts_at=start).exists():
            continue
        try:
            if review_instance_open(campaign=campaign, starts_at=start, now=now) is not None:
                counts["opened"] += 1
        except IntegrityError:  # another worker opened the same period first
            continue
    counts["reminders"] = _send_reminders(now)
    for instance in ReviewInstance.objects.filter(status=ReviewInstanceStatus.OPEN, ends_at__lte=now):
        try:
            review_instance_close(actor=None, instance=instance, now=now)
        except ValidationError:  # closed meanwhile (early, or by another worker)
            continue
        counts["closed"] += 1
    for instance in ReviewInstance.objects.filter(status=ReviewInstanceStatus.CLOSED, campaign__auto_apply=True):
        counts["removed"] += review_instance_apply(instance=instance)["removed"]
    return counts


@jobs.register("run_access_reviews", "Open due access reviews, remind reviewers, close ended ones and apply "
                                     "their results.")
def run_access_reviews() -> dict:
    return reviews_run(now=timezone.now())


# --- the header counter ------------------------------------------------------------------------------------------
def header_count(user) -> tuple[str, str, int] | None:
    return "Reviews", reverse("review-list"), open_item_count(user)
