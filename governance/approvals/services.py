"""Partner agents wait for a Global Administrator (R14–R16).

A partner blueprint whose permissions touch Microsoft product data cannot be set up until a Global Administrator
approves its exact permission set. The approval is bound to the blueprint version's permission digest (R15): a
version with other permissions needs a new approval, and agents on the old version keep running on the old set.
The registry knows nothing of this module; it exposes hooks that this module fills in when the app is ready.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents import policy as agent_policy
from agents import registry
from agents.choices import AgentStatus, PublisherKind
from agents.models import Agent, Blueprint
from governance.approvals.choices import ApprovalStatus
from governance.approvals.models import ApprovalRequest
from portal import audit, jobs, notifications, rbac
from portal.choices import MICROSOFT_DATA_PRODUCTS
from portal.models import User

BATCH = 500


class AlreadyDecided(ValidationError):
    """A second decision on a request that is no longer pending (HTTP 409 in the API)."""

    def __init__(self, request: ApprovalRequest):
        super().__init__(f"This request was already {request.get_status_display().lower()}"
                         f"{' by ' + request.decided_by.username if request.decided_by_id else ''}.",
                         code="already_decided")


# --- when approval is needed (R14) ------------------------------------------------------------------------------------
def microsoft_data_products(blueprint: Blueprint) -> list[str]:
    """The Microsoft products whose data the blueprint's permissions open (labels, sorted)."""
    products = {p.get_product_display() for p in blueprint.required_permissions.all()
                if p.product in MICROSOFT_DATA_PRODUCTS}
    return sorted(products)


def needs_approval(blueprint: Blueprint) -> bool:
    """R14: a partner blueprint reading Microsoft product data. Microsoft and organisation ones need none."""
    return blueprint.publisher_kind == PublisherKind.PARTNER and bool(microsoft_data_products(blueprint))


def covering_approval(blueprint: Blueprint) -> ApprovalRequest | None:
    """The approved request for exactly this version's permission set, if any (R15)."""
    return (ApprovalRequest.objects.filter(digest=blueprint.permission_digest, blueprint__name=blueprint.name,
                                           status=ApprovalStatus.APPROVED)
            .select_related("decided_by").order_by("-decided_at").first())


# --- answers to the registry's signals --------------------------------------------------------------------------------
def initial_status(blueprint: Blueprint, workspace) -> str | None:
    if needs_approval(blueprint) and covering_approval(blueprint) is None:
        return AgentStatus.PENDING_APPROVAL
    return None


def open_requests(actor: User | None, created: list[tuple[Agent, registry.AgentSpec]]) -> None:
    for agent, spec in created:
        if agent.status == AgentStatus.PENDING_APPROVAL:
            _request_create(actor=actor, agent=agent, justification=spec.justification or
                            f"Set up {agent.name} in {agent.workspace.name}.")


def activation_problem(agent: Agent, blueprint: Blueprint) -> str:
    if needs_approval(blueprint) and covering_approval(blueprint) is None:
        return (f"A Global Administrator has not approved the permission set of {blueprint}; "
                f"request approval first.")
    return ""


def setup_notice(blueprint: Blueprint) -> str | None:
    if not needs_approval(blueprint):
        return None
    if covering_approval(blueprint) is not None:
        return "A Global Administrator approved this partner blueprint's permission set: setup completes at once."
    return (f"Partner blueprint reading Microsoft data ({', '.join(microsoft_data_products(blueprint))}): the agent "
            f"waits in “pending approval” until a Global Administrator approves this exact permission set.")


def status_note(agent: Agent) -> tuple[str, str] | None:
    latest = agent.approval_requests.select_related("decided_by").order_by("-created_at", "-pk").first()
    if latest is None:
        return None
    link = request_link(latest)
    ask_again = reverse("approval-create", args=[agent.pk])
    if latest.status == ApprovalStatus.PENDING:
        return f"Waiting for a Global Administrator's approval (request #{latest.pk}).", link
    if latest.status == ApprovalStatus.APPROVED and agent.status == AgentStatus.PENDING_APPROVAL:
        return f"Approved by {latest.decided_by.username}: complete the setup to make it active.", link
    if latest.status == ApprovalStatus.DENIED and agent.status == AgentStatus.DRAFT:
        return f"Denied by {latest.decided_by.username}: {latest.reason} — you may ask again.", ask_again
    if latest.status in (ApprovalStatus.EXPIRED, ApprovalStatus.WITHDRAWN) and agent.status == AgentStatus.DRAFT:
        return f"The approval request was {latest.get_status_display().lower()}; ask again.", ask_again
    return None




# --- requests ---------------------------------------------------------------------------------------------------------
def request_link(request: ApprovalRequest) -> str:
    return reverse("approval-detail", args=[request.pk])


def _request_create(*, actor: User | None, agent: Agent, justification: str) -> ApprovalRequest:
    blueprint = agent.blueprint
    now = timezone.now()
    request = ApprovalRequest.objects.create(
        blueprint=blueprint, permissions=sorted(p.name for p in blueprint.required_permissions.all()),
        digest=blueprint.permission_digest, workspace=agent.workspace, agent=agent,
        requester=actor or agent.created_by, justification=justification.strip(), created_at=now,
        expires_at=now + timedelta(days=settings.APPROVAL_REQUEST_TTL_DAYS),
    )
    audit.record(actor=actor, action="approval.request", target=request, workspace=agent.workspace,
                 after={"blueprint": str(blueprint), "digest": request.digest, "permissions": request.permissions,
                        "agent": agent.name})
    who = request.requester.username if request.requester else "The system"
    notifications.notify(
        recipients=rbac.global_administrators().exclude(pk=request.requester_id),
        subject=f"Approval needed: {blueprint.display_name} (partner) reads Microsoft data",
        body=f"{who} asks to set up {agent.name} in {agent.workspace.name} from "
             f"{blueprint}. Review its {len(request.permissions)} permissions and approve or deny.",
        link=request_link(request),
    )
    return request


@transaction.atomic
def approval_request_create(*, actor: User, agent: Agent, justification: str) -> ApprovalRequest:
    """Ask again for a draft agent (after a denial, withdrawal or expiry); the agent waits in pending approval."""
    agent = Agent.objects.select_for_update(of=("self",)).select_related("workspace", "blueprint").get(pk=agent.pk)
    if not (agent_policy.can_manage_agent(actor, agent) or agent.created_by_id == actor.pk):
        raise PermissionDenied("Only the agent's creator and owners request its approval.")
    if not justification.strip():
        raise ValidationError("Say why this agent needs these permissions.")
    if agent.status != AgentStatus.DRAFT:
        raise ValidationError(f"Only a draft agent asks for approval; this one is {agent.get_status_display()}.")
    if not needs_approval(agent.blueprint):
        raise ValidationError("This blueprint needs no approval; complete the setup directly.")
    request = _request_create(actor=actor, agent=agent, justification=justification)
    agent.status = AgentStatus.PENDING_APPROVAL
    agent.save(update_fields=["status"])
    return request


def _lock_pending(request: ApprovalRequest) -> ApprovalRequest:
    request = ApprovalRequest.objects.select_for_update(of=("self",)).select_related(
        "blueprint", "workspace", "agent", "requester", "decided_by").get(pk=request.pk)
    if request.status != ApprovalStatus.PENDING:
        # Re-read: after waiting for the lock, PostgreSQL re-checks the locked row but not its joined rows.
        raise AlreadyDecided(ApprovalRequest.objects.select_related("decided_by").get(pk=request.pk))
    if request.expires_at <= timezone.now():
        raise ValidationError("This request has expired; the requester can ask again.", code="expired")
    return request


def _agent_to_draft(request: ApprovalRequest) -> None:
    if request.agent_id:
        Agent.objects.filter(pk=request.agent_id, status=AgentStatus.PENDING_APPROVAL).update(
            status=AgentStatus.DRAFT)


@transaction.atomic
def approval_decide(*, actor: User, approval: ApprovalRequest, approve: bool, reason: str = "") -> ApprovalRequest:
    """A Global Administrator approves or denies (reason required). Never the requester, through any path; two
    decisions racing on one request: the row lock lets exactly one through, the other gets ``AlreadyDecided``."""
    if not rbac.is_global_administrator(actor):
        raise PermissionDenied("Only Global Administrators approve partner agents.")
    request = _lock_pending(approval)
    if request.requester_id == actor.pk:
        raise PermissionDenied("You cannot decide your own request; another Global Administrator must.")
    reason = reason.strip()
    if not approve and not reason:
        raise ValidationError("Give the reason for the denial; the requester sees it.")
    request.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
    request.decided_by, request.decided_at, request.reason = actor, timezone.now(), reason
    request.save(update_fields=["status", "decided_by", "decided_at", "reason"])
    if not approve:
        _agent_to_draft(request)
    audit.record(actor=actor, action="approval.approve" if approve else "approval.deny", target=request,
                 workspace=request.workspace, before={"status": ApprovalStatus.PENDING},
                 after={"status": request.status, "digest": request.digest, "reason": reason})
    outcome = "approved: complete the setup" if approve else f"denied: {reason}"
    notifications.notify(recipients=[request.requester] if request.requester else [],
                         subject=f"{request.blueprint.display_name} {outcome}",
                         body=f"{actor.username} {outcome}.", link=request_link(request))
    return request


@transaction.atomic
def approval_withdraw(*, actor: User, approval: ApprovalRequest) -> ApprovalRequest:
    request = _lock_pending(approval)
    if request.requester_id != actor.pk and not (request.agent and agent_policy.can_manage_agent(actor,
                                                                                              request.agent)):
        raise PermissionDenied("Only the requester or the agent's owners withdraw a request.")
    request.status = ApprovalStatus.WITHDRAWN
    request.save(update_fields=["status"])
    _agent_to_draft(request)
    audit.record(actor=actor, action="approval.withdraw", target=request, workspace=request.workspace,
                 before={"status": ApprovalStatus.PENDING}, after={"status": request.status})
    return request


def requests_visible_to(user) -> QuerySet[ApprovalRequest]:
    """Global Administrators see every request; everyone else the requests they made and those for agents they
    manage (the people who may withdraw one, ``approval_withdraw``), so an owner sees where their agent stands."""
    qs = ApprovalRequest.objects.select_related("blueprint", "workspace", "agent", "requester", "decided_by")
    if rbac.is_global_administrator(user):
        return qs
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(Q(requester=user) | Q(agent__in=agent_policy.agents_managed_by(user)))


def previous_approved(request: ApprovalRequest) -> ApprovalRequest | None:
    """The latest approval of an earlier version of the same blueprint, for the diff on the review page."""
    return (ApprovalRequest.objects.filter(blueprint__name=request.blueprint.name, status=ApprovalStatus.APPROVED,
                                           blueprint__version__lt=request.blueprint.version)
            .select_related("blueprint").order_by("-blueprint__version", "-decided_at").first())


# --- the expiry job (docs/design.md, Scheduled jobs) ------------------------------------------------------------------
@jobs.register("expire_approval_requests",
               f"Expire partner-approval requests pending longer than {settings.APPROVAL_REQUEST_TTL_DAYS} days.")
def expire_approval_requests() -> dict:
    """Idempotent and safe on two workers: each batch takes its rows with SKIP LOCKED."""
    expired = 0
    while True:
        with transaction.atomic():
            batch = list(ApprovalRequest.objects.select_for_update(skip_locked=True, of=("self",))
                         .filter(status=ApprovalStatus.PENDING, expires_at__lte=timezone.now())
                         .select_related("workspace", "requester", "blueprint")[:BATCH])
            if not batch:
                break
            for request in batch:
                request.status = ApprovalStatus.EXPIRED
            ApprovalRequest.objects.bulk_update(batch, ["status"])
            Agent.objects.filter(pk__in=[r.agent_id for r in batch if r.agent_id],
                                 status=AgentStatus.PENDING_APPROVAL).update(status=AgentStatus.DRAFT)
            audit.record_many(actor=None, changes=[
                audit.Change("approval.expire", r, r.workspace, before={"status": ApprovalStatus.PENDING},
                             after={"status": ApprovalStatus.EXPIRED}) for r in batch])
            for request in batch:
                notifications.notify(recipients=[request.requester] if request.requester else [],
                                     subject=f"Approval request for {request.blueprint.display_name} expired",
                                     body="No Global Administrator decided in time; you can ask again.",
                                     link=request_link(request))
            expired += len(batch)
    return {"expired": expired}
