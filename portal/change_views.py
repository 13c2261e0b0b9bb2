"""Pages of four-eyes approval (docs/four-eyes.md): the changes waiting for a second administrator, one change with
its decision, and the organisation's settings. Thin: each POST calls one service of ``portal.changes``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal import changes, rbac
from portal.choices import ChangeState
from portal.forms import ChangeRejectForm, ChangeReviewForm, FourEyesSettingsForm
from portal.models import ChangeRequest, FourEyesSettings
from portal.viewutils import flash_errors, flash_form_errors, page

PENDING_MESSAGE = "This change waits for a second administrator. Nothing has been applied yet."


def pending_redirect(request, result):
    """For the views of gated services: when the service queued the change, say so and go to the request's page;
    otherwise None (the change was applied)."""
    if changes.is_pending(result):
        messages.info(request, PENDING_MESSAGE)
        return redirect("change-detail", change_id=result.pk)
    return None


def break_glass_from(request) -> dict:
    """The emergency fields a gated form posts (``portal/partials/break_glass_fields.html``), as the service's
    ``break_glass`` and ``justification`` arguments; the service refuses an emergency without a reason."""
    return {"break_glass": request.POST.get("break_glass") in ("on", "1", "true"),
            "justification": request.POST.get("justification", "")[:changes.MAX_NOTE]}


def _change_or_404(request, change_id: int) -> ChangeRequest:
    try:
        return changes.change_get(request.user, change_id)
    except ChangeRequest.DoesNotExist:
        raise Http404("No such change.") from None


@login_required
@require_GET
def change_list(request):
    visible = changes.changes_visible_to(request.user)
    open_changes = list(visible.filter(state__in=[ChangeState.APPLIED_BREAK_GLASS, ChangeState.PENDING])
                        .order_by("-break_glass", "requested_at", "pk")[:200])
    decided = visible.exclude(state__in=[ChangeState.APPLIED_BREAK_GLASS, ChangeState.PENDING])
    return render(request, "portal/changes/change_list.html", {
        "reviews": [c for c in open_changes if c.state == ChangeState.APPLIED_BREAK_GLASS],
        "pending": [c for c in open_changes if c.state == ChangeState.PENDING],
        "page": page(request, decided), "is_administrator": changes.is_administrator(request.user),
        "can_edit_settings": changes.can_edit_settings(request.user)})


@login_required
@require_GET
def change_detail(request, change_id: int):
    change = _change_or_404(request, change_id)
    may_decide = changes.is_administrator(request.user) and change.requested_by_id != request.user.pk
    return render(request, "portal/changes/change_detail.html", {
        "change": change, "may_decide": may_decide, "own": change.requested_by_id == request.user.pk,
        "reject_form": ChangeRejectForm(), "review_form": ChangeReviewForm()})


def _decision(request, change_id: int, decide, done, form_class=None):
    """The shape every decision on a change shares (approve, reject, review): the change (a 404 when hidden), the
    posted form checked when there is one, one service called by ``decide(change, **fields)``, a form's problems or
    the service's refusal flashed, and back to the change's page. ``done(answer)`` turns the service's answer into
    the success message, or into the response to send instead."""
    change = _change_or_404(request, change_id)
    fields = {}
    if form_class is not None:
        form = form_class(request.POST)
        if not form.is_valid():
            flash_form_errors(request, form)
            return redirect("change-detail", change_id=change.pk)
        fields = form.cleaned_data
    try:
        answer = decide(change, **fields)
    except ValidationError as error:
        flash_errors(request, error)
        return redirect("change-detail", change_id=change.pk)
    outcome = done(answer)
    if not isinstance(outcome, str):
        return outcome
    messages.success(request, outcome)
    return redirect("change-detail", change_id=change.pk)


@login_required
@require_POST
@never_cache
@sensitive_variables("secret")
def change_approve(request, change_id: int):
    @sensitive_variables("secret", "result", "answer")  # the shown-once secret lives in this function's frame
    def applied(answer):
        change, result = answer
        spec = changes.kind_spec(change.kind)
        secret = spec.shown_once(result) if spec.shown_once else None
        if secret:  # shown once, to the administrator who applied the change; never stored
            response = render(request, "portal/changes/change_applied.html", {"change": change, "secret": secret})
            response["Cache-Control"] = "no-store"
            return response
        return f"Approved and applied. {change.outcome}"

    return _decision(request, change_id, lambda change: changes.change_approve(actor=request.user, change=change),
                     applied)


@login_required
@require_POST
def change_reject(request, change_id: int):
    return _decision(request, change_id,
                     lambda change, reason: changes.change_reject(actor=request.user, change=change, reason=reason),
                     lambda _: "Rejected: nothing was applied.", ChangeRejectForm)


@login_required
@require_POST
def change_review(request, change_id: int):
    return _decision(request, change_id,
                     lambda change, verdict, note: changes.change_review(actor=request.user, change=change,
                                                                         verdict=verdict, note=note),
                     lambda _: "Review recorded.", ChangeReviewForm)


@login_required
@require_http_methods(["GET", "POST"])
def four_eyes_settings(request):
    rbac.require(changes.can_edit_settings(request.user),
                 "Only Global Administrators choose which changes need a second administrator.")
    kinds = changes.kinds()
    current = changes.high_impact_map(FourEyesSettings.objects.filter(pk=1).first())
    initial = {"bulk_retire_threshold": changes.bulk_retire_threshold(),
               **{f"kind_{name}": on for name, on in current.items()}}
    form = FourEyesSettingsForm(request.POST or None, kinds=kinds, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            changes.settings_save(actor=request.user, high_impact=form.high_impact(),
                                  bulk_retire_threshold=form.cleaned_data["bulk_retire_threshold"])
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Settings saved.")
            return redirect("four-eyes-settings")
    return render(request, "portal/changes/settings.html", {"form": form})
