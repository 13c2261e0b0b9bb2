"""Partner approval pages: the queue, a request, its decision."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import selectors as agent_selectors
from governance.approvals import services as approvals
from governance.approvals.choices import ApprovalStatus
from portal import rbac
from portal.viewutils import act, flash_errors, page

TABS = {
    "all": list(ApprovalStatus),
    "pending": [ApprovalStatus.PENDING],
    "decided": [ApprovalStatus.APPROVED, ApprovalStatus.DENIED, ApprovalStatus.WITHDRAWN],
    "expired": [ApprovalStatus.EXPIRED],
}


def _visible_request(user, request_id: int):
    request = approvals.requests_visible_to(user).filter(pk=request_id).first()
    if request is None:
        raise Http404("No such approval request.")
    return request


@login_required
@require_GET
def approval_list(request):
    """A Global Administrator's queue opens on what waits for a decision; anyone else's list opens on all their
    requests (made by them or for agents they manage), each with where it stands."""
    is_ga = rbac.is_global_administrator(request.user)
    tab = request.GET.get("tab", "pending" if is_ga else "all")
    tab = tab if tab in TABS else "pending"
    visible = approvals.requests_visible_to(request.user)
    return render(request, "governance/approvals/approval_list.html", {
        "page": page(request, visible.filter(status__in=TABS[tab])), "tab": tab, "query": f"tab={tab}",
        "is_ga": is_ga,
        "counts": {name: visible.filter(status__in=s).count() for name, s in TABS.items()},
    })


@login_required
@require_GET
def approval_detail(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    previous = approvals.previous_approved(approval)
    current = set(approval.permissions)
    before = set(previous.permissions) if previous else set()
    permissions = list(approval.blueprint.required_permissions.order_by("product", "name"))
    return render(request, "governance/approvals/approval_detail.html", {
        "approval": approval, "permissions": permissions, "previous": previous,
        "added": sorted(current - before) if previous else [], "removed": sorted(before - current),
        "products": approvals.microsoft_data_products(approval.blueprint),
        "can_decide": rbac.is_global_administrator(request.user) and approval.requester_id != request.user.pk
        and approval.status == ApprovalStatus.PENDING,
        "is_requester": approval.requester_id == request.user.pk,
    })


@login_required
@require_POST
def approval_approve(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_decide, lambda r: f"Approved request #{r.pk}.", approval=approval, approve=True)
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_POST
def approval_deny(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_decide, lambda r: f"Denied request #{r.pk}.", approval=approval, approve=False,
        reason=request.POST.get("reason", ""))
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_POST
def approval_withdraw(request, request_id: int):
    approval = _visible_request(request.user, request_id)
    act(request, approvals.approval_withdraw, lambda r: f"Request #{r.pk} withdrawn.", approval=approval)
    return redirect("approval-detail", request_id=approval.pk)


@login_required
@require_http_methods(["GET", "POST"])
def approval_create(request, agent_id: int):
    """Ask again for a draft agent (after a denial, withdrawal or expiry)."""
    agent = agent_selectors.agent_get(request.user, agent_id)
    if request.method == "POST":
        try:
            created = approvals.approval_request_create(actor=request.user, agent=agent,
                                                        justification=request.POST.get("justification", ""))
        except ValidationError as error:
            flash_errors(request, error)
        else:
            messages.success(request, f"Approval requested (#{created.pk}). Send the link to a Global Administrator.")
            return redirect("approval-detail", request_id=created.pk)
    return render(request, "governance/approvals/approval_create.html", {"agent": agent})
