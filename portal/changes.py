"""Four-eyes approval and break-glass for high-impact changes (docs/design.md, R31; docs/four-eyes.md).

The changes that need a second administrator live in several layers (conditional access, the skill map, bulk
retirement, risk remediation, resource servers, client applications), so the mechanism lives here, at the bottom,
and knows none of them. A higher layer registers an *applier* for each kind of change, once, at import:

    changes.register("risk.remediation_policy", label="Change automatic risk remediation",
                     apply=_apply, describe=_describe)

and its service, before changing anything, hands the change to ``gate``:

    return changes.gate(actor=actor, kind="risk.remediation_policy", payload={...},
                        break_glass=break_glass, justification=justification)

``gate`` applies at once when the kind is not high-impact in the organisation's settings (or when the system acts:
commands and jobs run by an operator with the machine in hand). Otherwise it tries the change and rolls it back
(so a refusal or bad input is reported now and nothing waits for nothing), then records a pending
``ChangeRequest`` and returns it; nothing is applied. Another administrator, never the requester, approves it: in
one transaction the request is locked (``select_for_update``; two approvals racing → one wins) and the applier runs
with the original payload as the approver, re-checking its own rules. Or they reject it with a reason.

Break-glass: one administrator applies at once with a written justification; every Global Administrator is told,
the audit event says so, and the request stays open until another administrator reviews it after the fact.

Appliers take ``actor`` and ``payload`` (plain JSON: ids, not objects) and return what the service returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from portal import audit, notifications, rbac
from portal.choices import ChangeState, UserKind
from portal.models import ChangeRequest, FourEyesSettings, User

BULK_RETIRE_DEFAULT_THRESHOLD = 10
MAX_NOTE = 2000


@dataclass(frozen=True)
class Kind:
    """One kind of high-impact change and how to apply it (registered by the layer that owns the change)."""

    name: str
    label: str
    apply: Callable[..., Any]
    describe: Callable[[dict], str]
    outcome: Callable[[Any], str] = lambda result: "Applied."
    default_high_impact: bool = True
    shown_once: Callable[[Any], str] | None = None


_KINDS: dict[str, Kind] = {}


def register(kind: str, *, label: str, apply: Callable[..., Any], describe: Callable[[dict], str],
             outcome: Callable[[Any], str] | None = None, default_high_impact: bool = True,
             shown_once: Callable[[Any], str] | None = None) -> Kind:
    """Register (or replace, on a module reload) the applier of a kind of change. ``outcome(result)`` says what
    was done; ``shown_once(result)``, for a change that makes a secret, returns it to show the person who applied
    the change, once (it is never stored)."""
    spec = Kind(name=kind, label=label, apply=apply, describe=describe,
                outcome=outcome or (lambda result: "Applied."), default_high_impact=default_high_impact,
                shown_once=shown_once)
    _KINDS[kind] = spec
    return spec


def kinds() -> list[Kind]:
    return sorted(_KINDS.values(), key=lambda spec: spec.label)


def kind_spec(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ValidationError(f"Unknown kind of change '{name}'.") from None


# --- who -------------------------------------------------------------------------------------------------------------


def is_administrator(user) -> bool:
    """Administrators take part in four-eyes: people holding Global, Security, Compliance, or Privileged Role
    Administrator. Agent users never do."""
    if not getattr(user, "is_authenticated", False) or getattr(user, "kind", None) != UserKind.HUMAN:
        return False
    return rbac.is_inherited_owner(user) or rbac.can_manage_directory(user)


def can_edit_settings(user) -> bool:
    """Which changes are high-impact is for Global Administrators."""
    return rbac.is_global_administrator(user)


def changes_visible_to(user) -> QuerySet[ChangeRequest]:
    """Administrators see every request; anyone else sees the requests they made."""
    rows = ChangeRequest.objects.select_related("requested_by", "decided_by")
    if is_administrator(user):
        return rows
    if not getattr(user, "is_authenticated", False):
        return rows.none()
    return rows.filter(requested_by=user)


def change_get(user, change_id: int) -> ChangeRequest:
    """The request if ``user`` may see it, else 404 (``ChangeRequest.DoesNotExist``)."""
    return changes_visible_to(user).get(pk=change_id)


# --- settings --------------------------------------------------------------------------------------------------------


def _settings_row() -> FourEyesSettings | None:
    return FourEyesSettings.objects.filter(pk=1).first()


def _default(spec: Kind) -> bool:
    """A kind's default when the organisation has not chosen: ``FOUR_EYES_DEFAULT_KINDS`` (a list of kinds, for
    a deployment or a test run) when set, else the kind's registered default."""
    configured = getattr(settings, "FOUR_EYES_DEFAULT_KINDS", None)
    if configured is not None:
        return spec.name in configured
    return spec.default_high_impact


def high_impact_map(row: FourEyesSettings | None = None) -> dict[str, bool]:
    """Every registered kind → whether it needs a second administrator now."""
    chosen = (row.high_impact if row is not None else None) or {}
    return {spec.name: bool(chosen.get(spec.name, _default(spec))) for spec in kinds()}


def is_high_impact(name: str) -> bool:
    row = _settings_row()
    chosen = (row.high_impact if row is not None else None) or {}
    return bool(chosen.get(name, _default(kind_spec(name))))


def bulk_retire_threshold() -> int:
    """Retiring more agents than this at once is high-impact (when that kind is on)."""
    row = _settings_row()
    return row.bulk_retire_threshold if row is not None else BULK_RETIRE_DEFAULT_THRESHOLD


@transaction.atomic
def settings_save(*, actor: User, high_impact: dict[str, bool], bulk_retire_threshold: int) -> FourEyesSettings:
    """Global Administrators choose which kinds of change are high-impact; one audit event."""
    if not can_edit_settings(actor):
        raise PermissionDenied("Only Global Administrators choose which changes need a second administrator.")
    unknown = sorted(set(high_impact) - set(_KINDS))
    if unknown:
        raise ValidationError(f"Unknown kinds of change: {', '.join(unknown)}.")
    if not isinstance(bulk_retire_threshold, int) or isinstance(bulk_retire_threshold, bool) \
            or not 1 <= bulk_retire_threshold <= 100000:
        raise ValidationError("The number of agents is a whole number from 1 to 100000.")
    row, _created = FourEyesSettings.objects.select_for_update().get_or_create(pk=1)
    before = {"high_impact": high_impact_map(row), "bulk_retire_threshold": row.bulk_retire_threshold}
    row.high_impact = {name: bool(value) for name, value in sorted(high_impact.items())}
    row.bulk_retire_threshold = bulk_retire_threshold
    row.updated_by, row.updated_at = actor, timezone.now()
    row.save()
    audit.record(actor=actor, action="change.settings", target=row, target_label="four-eyes settings",
                 before=before, after={"high_impact": high_impact_map(row),
                                       "bulk_retire_threshold": row.bulk_retire_threshold})
    return row


# --- the gate --------------------------------------------------------------------------------------------------------


class _TryOnly(Exception):
    """Raised to roll back a trial run of an applier."""


def _try(spec: Kind, actor: User, payload: dict) -> None:
    """Run the applier as the requester and roll everything back: a refusal or bad input surfaces now, as the
    service's own error, and nothing is queued. Callbacks registered for commit inside are discarded with it."""
    try:
        with transaction.atomic():
            spec.apply(actor=actor, payload=payload)
            raise _TryOnly
    except _TryOnly:
        pass


def _summary(spec: Kind, payload: dict) -> str:
    return f"{spec.label}: {spec.describe(payload)}"[:300]


def _link(change: ChangeRequest) -> str:
    return reverse("change-detail", args=[change.pk])


@transaction.atomic
def gate(*, actor: User | None, kind: str, payload: dict, justification: str = "",
         break_glass: bool = False) -> Any:
    """Apply a change now, or record it for a second administrator (R31).

    Returns the applier's result when applied (not high-impact, the system acting, or break-glass), or the pending
    ``ChangeRequest`` (nothing applied; one audit event)."""
    spec = kind_spec(kind)
    payload = json.loads(json.dumps(payload, cls=DjangoJSONEncoder))  # what is approved is exactly what is stored
    if actor is None or not is_high_impact(kind):
        return spec.apply(actor=actor, payload=payload)
    justification = (justification or "").strip()[:MAX_NOTE]
    if break_glass:
        return _break_glass(spec=spec, actor=actor, payload=payload, justification=justification)
    _try(spec, actor, payload)
    change = ChangeRequest.objects.create(kind=kind, summary=_summary(spec, payload), payload=payload,
                                          requested_by=actor, justification=justification)
    audit.record(actor=actor, action="change.request", target=change,
                 after={"kind": kind, "summary": change.summary, "state": change.state,
                        "justification": justification})
    return change


def _break_glass(*, spec: Kind, actor: User, payload: dict, justification: str) -> Any:
    if not is_administrator(actor):
        raise PermissionDenied("Only an administrator may act at once in an emergency; ask an administrator to "
                               "approve the change instead.")
    if not justification:
        raise ValidationError("Say why this change cannot wait for a second administrator.")
    result = spec.apply(actor=actor, payload=payload)
    outcome = spec.outcome(result)[:300]
    change = ChangeRequest.objects.create(
        kind=spec.name, summary=_summary(spec, payload), payload=payload, requested_by=actor,
        justification=justification, break_glass=True, state=ChangeState.APPLIED_BREAK_GLASS, outcome=outcome)
    audit.record(actor=actor, action="change.break_glass", target=change,
                 after={"kind": spec.name, "summary": change.summary, "break_glass": True,
                        "justification": justification, "state": change.state})
    notifications.notify(
        recipients=rbac.global_administrators(),
        subject=f"Emergency change by {actor.label}: {spec.label}",
        body=(f"{actor.label} applied a high-impact change without a second administrator.\n\n"
              f"Change: {change.summary}\nReason given: {justification}\n\n"
              f"Another administrator must review it."),
        link=_link(change))
    return result


# --- deciding ---------------------------------------------------------------------------------------------------------


def _require_second_administrator(actor: User, change: ChangeRequest, what: str) -> None:
    if not is_administrator(actor):
        raise PermissionDenied(f"Only administrators {what} changes waiting for a second administrator.")
    if change.requested_by_id == actor.pk:
        raise PermissionDenied(f"You asked for this change, so you cannot {what.rstrip('s')} it yourself: "
                               f"another administrator must.")


def _lock(change: ChangeRequest) -> ChangeRequest:
    return ChangeRequest.objects.select_for_update(of=("self",)).select_related("requested_by").get(pk=change.pk)


@transaction.atomic
def change_approve(*, actor: User, change: ChangeRequest) -> tuple[ChangeRequest, Any]:
    """Approve a pending change and apply it, as the approver, with the payload that was asked for. The request is
    row-locked first: of two approvals racing, the second finds it decided and is refused."""
    change = _lock(change)
    _require_second_administrator(actor, change, "approve")
    if change.state != ChangeState.PENDING:
        raise ValidationError(f"This change is no longer waiting ({change.get_state_display().lower()}).")
    spec = kind_spec(change.kind)
    result = spec.apply(actor=actor, payload=change.payload)
    change.state, change.decided_by, change.decided_at = ChangeState.APPROVED, actor, timezone.now()
    change.outcome = spec.outcome(result)[:300]
    change.save(update_fields=["state", "decided_by", "decided_at", "outcome"])
    audit.record(actor=actor, action="change.approve", target=change, before={"state": ChangeState.PENDING},
                 after={"state": change.state, "kind": change.kind, "summary": change.summary,
                        "requested_by": change.requested_by.username if change.requested_by else ""})
    if change.requested_by is not None:
        notifications.notify(recipients=[change.requested_by], subject=f"Change approved: {spec.label}",
                             body=f"{actor.label} approved and applied: {change.summary}", link=_link(change))
    return change, result


@transaction.atomic
def change_reject(*, actor: User, change: ChangeRequest, reason: str) -> ChangeRequest:
    """Reject a pending change with a reason; nothing is applied."""
    change = _lock(change)
    _require_second_administrator(actor, change, "reject")
    reason = (reason or "").strip()[:MAX_NOTE]
    if not reason:
        raise ValidationError("Give a reason for rejecting the change.")
    if change.state != ChangeState.PENDING:
        raise ValidationError(f"This change is no longer waiting ({change.get_state_display().lower()}).")
    change.state, change.decided_by, change.decided_at = ChangeState.REJECTED, actor, timezone.now()
    change.decision_note = reason
    change.save(update_fields=["state", "decided_by", "decided_at", "decision_note"])
    audit.record(actor=actor, action="change.reject", target=change, before={"state": ChangeState.PENDING},
                 after={"state": change.state, "reason": reason})
    if change.requested_by is not None:
        notifications.notify(recipients=[change.requested_by], subject="Change rejected",
                             body=f"{actor.label} rejected: {change.summary}\nReason: {reason}", link=_link(change))
    return change


REVIEW_CONFIRM = "confirm"
REVIEW_FLAG = "flag"


@transaction.atomic
def change_review(*, actor: User, change: ChangeRequest, verdict: str, note: str = "") -> ChangeRequest:
    """Review an emergency change after the fact: confirm it, or flag it with a note (every Global Administrator
    is told of a flag). Another administrator than the one who acted."""
    change = _lock(change)
    _require_second_administrator(actor, change, "review")
    note = (note or "").strip()[:MAX_NOTE]
    if verdict not in (REVIEW_CONFIRM, REVIEW_FLAG):
        raise ValidationError("Confirm the change or flag it.")
    if verdict == REVIEW_FLAG and not note:
        raise ValidationError("Say what is wrong with the change when you flag it.")
    if change.state != ChangeState.APPLIED_BREAK_GLASS:
        raise ValidationError("Only an emergency change waiting for review can be reviewed.")
    change.state, change.decided_by, change.decided_at = ChangeState.REVIEWED, actor, timezone.now()
    change.decision_note, change.review_flagged = note, verdict == REVIEW_FLAG
    change.save(update_fields=["state", "decided_by", "decided_at", "decision_note", "review_flagged"])
    audit.record(actor=actor, action="change.review", target=change,
                 before={"state": ChangeState.APPLIED_BREAK_GLASS},
                 after={"state": change.state, "verdict": verdict, "note": note, "break_glass": True})
    if change.review_flagged:
        notifications.notify(recipients=rbac.global_administrators(),
                             subject=f"Emergency change flagged by {actor.label}",
                             body=f"{change.summary}\nNote: {note}", link=_link(change))
    return change


def is_pending(result: Any) -> bool:
    """Did ``gate`` (through a service) queue the change instead of applying it?"""
    return isinstance(result, ChangeRequest) and result.state == ChangeState.PENDING
