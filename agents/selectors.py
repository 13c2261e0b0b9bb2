"""Registry reads, restricted to what the user may see (a hidden agent is a 404)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from agents import policy, signals
from agents.choices import SPONSORSHIP_CURRENT, SponsorshipState
from agents.models import (
    Agent,
    AgentIdentity,
    AgentUserObjectPermission,
    AttributeValue,
    Blueprint,
    BulkJob,
    Credential,
    PermissionGrant,
    Sponsorship,
)
from portal.choices import UserKind
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
    return (agents.select_related("blueprint", "workspace").prefetch_related(people)
            .annotate(sponsored=sponsored_annotation()).order_by(*order))


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
        **_sponsorship_detail(agent, now),
        "attributes": list(AttributeValue.objects.filter(agent=agent)),
        "history": list(history),
    }


def _sponsorship_detail(agent: Agent, now: datetime) -> dict:
    """The agent's named sponsors with their answers, and whether one accepted (R30; one query)."""
    rows = agent_sponsorships(agent)
    for row in rows:
        row.counts = (row.state == SponsorshipState.ACCEPTED and row.due_at > now and row.user.is_active
                      and row.user.kind == UserKind.HUMAN)
    return {"sponsorships": rows, "sponsored": any(row.counts for row in rows)}


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


# --- sponsorship (R30; docs/sponsorship.md) ----------------------------------------------------------------------


def accepted_sponsorships(now: datetime | None = None) -> QuerySet[Sponsorship]:
    """Sponsorships that sponsor an agent now: accepted, not past their due date (even before the job lapses
    them), by an active person."""
    now = now or timezone.now()
    return Sponsorship.objects.filter(state=SponsorshipState.ACCEPTED, due_at__gt=now, user__is_active=True,
                                      user__kind=UserKind.HUMAN)


def accepted_sponsor_ids(agent_ids: Iterable[int], now: datetime | None = None) -> dict[int, set[int]]:
    """The user ids of each agent's accepted sponsors, in one query; agents without one are absent. The one
    definition of "sponsored" for the orphan sweep, reviews and the hygiene agent."""
    sponsors: dict[int, set[int]] = {}
    for agent_id, user_id in accepted_sponsorships(now).filter(agent_id__in=list(agent_ids)) \
            .values_list("agent_id", "user_id"):
        sponsors.setdefault(agent_id, set()).add(user_id)
    return sponsors


def agents_sponsored_or_waiting(now: datetime | None = None) -> QuerySet:
    """Ids of agents the orphan sweep leaves alone: sponsored (an accepted sponsorship), or named sponsors asked
    within the last ``ORPHAN_GRACE_DAYS`` who have not answered yet (docs/sponsorship.md, "Unsponsored")."""
    now = now or timezone.now()
    asked_since = now - timedelta(days=settings.ORPHAN_GRACE_DAYS)
    waiting = Sponsorship.objects.filter(state=SponsorshipState.PENDING, requested_at__gt=asked_since,
                                         user__is_active=True, user__kind=UserKind.HUMAN)
    return Agent.objects.filter(Q(pk__in=accepted_sponsorships(now).values("agent_id"))
                                | Q(pk__in=waiting.values("agent_id"))).values("pk")


def sponsored_annotation(now: datetime | None = None) -> Exists:
    """``Exists`` for ``.annotate(sponsored=…)`` on agents: one subquery, so a list shows "unsponsored" at no
    extra query per row."""
    return Exists(accepted_sponsorships(now).filter(agent_id=OuterRef("pk")))


def sponsorships_of(user) -> QuerySet[Sponsorship]:
    """The user's own current sponsorships (waiting, accepted, lapsed), for "My sponsorships"."""
    return (Sponsorship.objects.filter(user=user, state__in=SPONSORSHIP_CURRENT)
            .select_related("agent__workspace", "requested_by", "replaces__user")
            .order_by("state", "due_at", "agent__name"))


def sponsorship_get(user, sponsorship_id: int) -> Sponsorship:
    """One sponsorship of the user's own; anyone else's is a 404 (only the named person answers it)."""
    found = (Sponsorship.objects.filter(pk=sponsorship_id, user=user)
             .select_related("agent__workspace", "requested_by", "replaces__user").first())
    if found is None or not getattr(user, "is_authenticated", False):
        raise Http404("No such sponsorship.")
    return found


def agent_sponsorships(agent: Agent) -> list[Sponsorship]:
    """The agent's current sponsorships with their people, for its page (one query)."""
    return list(Sponsorship.objects.filter(agent=agent, state__in=SPONSORSHIP_CURRENT)
                .select_related("user", "replaces__user").order_by("user__username"))
