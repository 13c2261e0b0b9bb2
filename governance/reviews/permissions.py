"""Evidence of use per permission in access reviews (docs/design.md, R32): what each item holds, per permission, with
its use and the advice; reviewers keep or remove each permission; removals are carried out when results are applied
(an access package is held whole)."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.access import services as access_packages
from governance.access.choices import AssignmentStatus
from governance.access.models import AccessPackage, Assignment
from governance.reviews.choices import (
    PermissionAdvice,
    PermissionDecision,
    PermissionSource,
    ReviewInstanceStatus,
    ReviewScope,
)
from governance.reviews.decisions import item_to_decide, require_reviewer
from governance.reviews.models import (
    AccessReview,
    ReviewInstance,
    ReviewItem,
    ReviewItemPermission,
)
from governance.reviews.selectors import BATCH
from governance.usage import selectors as usage
from portal import audit, timefmt
from portal.models import User

# --- evidence of use per permission (docs/design.md, R32) ---------------------------------------------------------
Held = tuple[str, str, int | None]  # (permission, source, assignment id)


def held_permissions(campaign: AccessReview, rows: list[dict], grants: dict[int, list[str]],
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


def item_permissions(held: list[Held], evidence: dict[str, usage.PermissionEvidence]) -> list[ReviewItemPermission]:
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


def _permission_for_decision(actor: User, permission: ReviewItemPermission) -> ReviewItemPermission:
    """The permission row locked, after the checks of ``review_decide``: a reviewer of its item, not about their own
    access, while the instance is open."""
    permission = ReviewItemPermission.objects.select_for_update(of=("self",)).select_related(
        "item__instance__campaign__workspace", "item__agent").get(pk=permission.pk)
    item = permission.item
    require_reviewer(actor, item)
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
    item = item_to_decide(actor, item)
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


def apply_removed_permissions(instance: ReviewInstance, campaign: AccessReview) -> tuple[int, int]:
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
