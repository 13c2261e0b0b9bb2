"""Registry reads, restricted to what the user may see (a hidden agent is a 404)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from agents import policy, signals
from agents.models import (
    Agent,
    AgentIdentity,
    AgentUserObjectPermission,
    AttributeValue,
    Blueprint,
    BulkJob,
    Credential,
    PermissionGrant,
)
from portal.models import AuditEvent, Workspace

EXPIRING_SOON = timedelta(days=30)
SORTS = {
    "name": ("name", "pk"), "-name": ("-name", "-pk"),
    "created": ("created_at", "pk"), "-created": ("-created_at", "-pk"),
    "expires": ("expires_at", "pk"), "-expires": ("-expires_at", "-pk"),
    "status": ("status", "name", "pk"),
}


def last_used(agent_ids: Iterable[int]) -> dict[int, datetime]:
    """The latest use of each agent by every app that records use (``signals.last_used``); agents never used are
    absent."""
    ids = list(agent_ids)
    merged: dict[int, datetime] = {}
    if not ids:
        return merged
    for used in signals.answers(signals.last_used, agent_ids=ids):
        for agent_id, at in used.items():
            if at is not None and (agent_id not in merged or at > merged[agent_id]):
                merged[agent_id] = at
    return merged


def with_last_used(agents: Iterable[Agent]) -> list[Agent]:
    """Set ``last_used_at`` (None when never used) on each agent, in one lookup per app for the whole list."""
    agents = list(agents)
    used = last_used(agent.pk for agent in agents)
    for agent in agents:
        agent.last_used_at = used.get(agent.pk)
    return agents


def agent_get(user, agent_id: int) -> Agent:
    agent = (policy.agents_visible_to(user).select_related("workspace", "blueprint", "run_as_user", "created_by")
             .filter(pk=agent_id).first())
    if agent is None:
        raise Http404("No such agent.")
    return agent


def agent_list(user, workspace: Workspace | None, params: dict) -> QuerySet[Agent]:
    """The registry list for the current workspace, with the page's filters and sort (constant queries)."""
    agents = policy.agents_visible_to(user)
    if workspace is not None:
        agents = agents.filter(workspace=workspace)
    if params.get("q"):
        agents = agents.filter(Q(name__icontains=params["q"]) | Q(blueprint__display_name__icontains=params["q"]))
    for key, lookup in (("status", "status"), ("identity_type", "identity_type"), ("scope", "scope"),
                        ("publisher_kind", "blueprint__publisher_kind")):
        if params.get(key):
            agents = agents.filter(**{lookup: params[key]})
    for key, codename in (("sponsor", policy.SPONSOR_AGENT), ("owner", policy.OWN_AGENT)):
        if params.get(key):
            agents = agents.filter(pk__in=AgentUserObjectPermission.objects.filter(
                permission__codename=codename, user__username=params[key]).values("content_object_id"))
    if params.get("attribute"):
        key, _, value = params["attribute"].partition("=")
        matching = AttributeValue.objects.filter(key=key.strip())
        if value:
            matching = matching.filter(value=value.strip())
        agents = agents.filter(pk__in=matching.values("agent_id"))
    if params.get("expiring"):
        now = timezone.now()
        agents = agents.filter(expires_at__gt=now, expires_at__lte=now + EXPIRING_SOON)
    order = SORTS.get(params.get("sort") or "name", SORTS["name"])
    people = Prefetch("agentuserobjectpermission_set",
                      queryset=AgentUserObjectPermission.objects.select_related("user", "permission"),
                      to_attr="people")
    return agents.select_related("blueprint", "workspace").prefetch_related(people).order_by(*order)


def agent_detail(agent: Agent) -> dict:
    """Everything the detail page shows, in a fixed number of queries."""
    identity = AgentIdentity.objects.filter(agent=agent).select_related("agent_user__user").first()
    now = timezone.now()
    grants = []
    creds = []
    if identity is not None:
        grants = list(PermissionGrant.objects.filter(identity=identity).select_related("permission"))
        creds = list(Credential.objects.filter(identity=identity).select_related("created_by"))
        for credential in creds:
            credential.active_now = credential.is_active(now)
    people = {policy.OWN_AGENT: [], policy.SPONSOR_AGENT: []}
    for row in AgentUserObjectPermission.objects.filter(content_object=agent).select_related("user", "permission") \
            .order_by("user__username"):
        people[row.permission.codename].append(row.user)
    history = AuditEvent.objects.filter(target_type="agents.agent", target_id=str(agent.pk)).order_by("-id")[:50]
    return {
        "identity": identity,
        "agent_user": getattr(identity, "agent_user", None) if identity else None,
        "grants": grants,
        "credentials": creds,
        "active_credentials": [c for c in creds if c.active_now],
        "owners": people[policy.OWN_AGENT],
        "sponsors": people[policy.SPONSOR_AGENT],
        "attributes": list(AttributeValue.objects.filter(agent=agent)),
        "history": list(history),
    }


def blueprints_latest() -> QuerySet[Blueprint]:
    """Every blueprint version, newest first per name (the catalog is shared by all workspaces)."""
    return Blueprint.objects.select_related("publisher").order_by("name", "-version")


def blueprint_get(blueprint_id: int) -> Blueprint:
    blueprint = Blueprint.objects.select_related("publisher", "imported_by").filter(pk=blueprint_id).first()
    if blueprint is None:
        raise Http404("No such blueprint.")
    return blueprint


def bulk_job_get(user, job_id: int) -> BulkJob:
    job = BulkJob.objects.select_related("workspace", "requested_by").filter(pk=job_id).first()
    if job is None or (job.requested_by_id != user.pk and not policy.rbac.has_workspace_perm(
            user, job.workspace, policy.rbac.MANAGE_MEMBERS)):
        raise Http404("No such upload.")
    return job
