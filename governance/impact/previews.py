"""Blast radius: what a disruptive change stops, shown before it is confirmed (docs/blast-radius.md).

One preview function per action, read by its confirmation page and by the API alike:

- ``agents_preview(agents, action)``: disabling or retiring one agent or many;
- ``credential_preview(credential)``: revoking a secret, a key or a federated credential;
- ``assignment_preview(assignment)``: ending an access-package assignment early;
- ``package_preview(package)``: removing an access package, which ends every open assignment of it.

Each reads with the same definitions as the change it previews (live tokens as ``tokens._revoke`` ends them, runs in
progress as ``runs.services.runs_in_progress``, tokens carrying an assignment as ``tokens.tokens_carrying``, use as
``usage.selectors``), so the preview lists exactly what then stops. Each runs a fixed number of queries whatever the
number of agents, tokens or runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentStatus
from agents.models import (
    Agent,
    AgentUserObjectPermission,
    Credential,
    FederatedCredential,
    KeyCredential,
)
from governance.access.choices import AssignmentStatus
from governance.access.models import AccessPackage, Assignment
from governance.runs.models import Run, Session
from governance.runs.services import runs_in_progress
from governance.signin import tokens as signin_tokens
from governance.signin.choices import SignInOutcome
from governance.signin.models import AccessToken, ResourceServer, SignIn
from governance.usage import selectors as usage
from portal.choices import UserKind
from portal.models import User

#: How far back "used recently" looks.
WINDOW = timedelta(days=7)
AGENT_ACTIONS = ("disable", "retire")
ROLE_WORDS = {agent_policy.OWN_AGENT: "owner", agent_policy.SPONSOR_AGENT: "sponsor"}


@dataclass
class Person:
    user: User
    roles: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"username": self.user.username, "name": self.user.label, "roles": self.roles}


@dataclass
class BlastRadius:
    """What stops. ``tokens`` are revoked, ``runs`` cancelled (or, for an assignment, cut off from their token),
    ``sessions`` left with no run in progress; ``resources`` and ``scopes`` are what the agents used in the last
    7 days; ``people`` are told once it is done."""

    action: str
    agents: list[Agent]
    tokens: list[AccessToken] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    schedules: list[Agent] = field(default_factory=list)
    resources: list[dict] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    agents_without_credential: list[Agent] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    assignments: int = 0
    tokens_kept: int = 0
    skipped: list[Agent] = field(default_factory=list)
    since: datetime | None = None

    @property
    def token_resources(self) -> list[dict]:
        """Live tokens per audience (the resource each token is for)."""
        counts = Counter(token.audience for token in self.tokens)
        return [{"resource": audience, "tokens": n} for audience, n in sorted(counts.items())]

    @property
    def per_agent(self) -> list[dict]:
        tokens = Counter(token.agent_id for token in self.tokens)
        runs = Counter(run.agent_id for run in self.runs)
        sessions = Counter(session.agent_id for session in self.sessions)
        return [{"agent": agent, "tokens": tokens[agent.pk], "runs": runs[agent.pk], "sessions": sessions[agent.pk]}
                for agent in self.agents]

    @property
    def nothing_stops(self) -> bool:
        return not (self.tokens or self.runs or self.sessions or self.schedules or self.agents_without_credential)

    def as_json(self) -> dict:
        return {
            "action": self.action,
            "agents": [{"id": row["agent"].pk, "name": row["agent"].name, "tokens": row["tokens"],
                        "runs": row["runs"], "sessions": row["sessions"]} for row in self.per_agent],
            "tokens": len(self.tokens),
            "token_resources": self.token_resources,
            "token_ids": [token.pk for token in self.tokens],
            "tokens_kept": self.tokens_kept,
            "runs": [{"id": run.pk, "agent": run.agent.name, "status": run.status, "trigger": run.trigger,
                      "started_by": run.started_by.username if run.started_by else None} for run in self.runs],
            "scheduled": [{"agent": agent.name, "next_run_at": agent.next_run_at} for agent in self.schedules],
            "sessions": [{"id": session.pk, "agent": session.agent.name, "title": str(session),
                          "opened_by": session.opened_by.username} for session in self.sessions],
            "resources": self.resources,
            "scopes": self.scopes,
            "since": self.since,
            "agents_without_credential": [agent.name for agent in self.agents_without_credential],
            "assignments": self.assignments,
            "people": [person.as_json() for person in self.people],
            "skipped": [agent.name for agent in self.skipped],
        }


# --- the parts ----------------------------------------------------------------------------------------------------


def _live_tokens(queryset, now: datetime) -> list[AccessToken]:
    return list(queryset.filter(revoked_at__isnull=True, expires_at__gt=now).order_by("agent_id", "pk"))


def _runs_and_sessions(agent_ids: Sequence[int]) -> tuple[list[Run], list[Session]]:
    runs = list(runs_in_progress(agent_ids).select_related("agent", "started_by", "session__opened_by")
                .order_by("agent_id", "pk"))
    sessions = {run.session.pk: run.session for run in runs if run.session is not None}
    agents = {run.agent_id: run.agent for run in runs}
    for session in sessions.values():
        session.agent = agents[session.agent_id]  # str(session) names it without a query
    return runs, sorted(sessions.values(), key=lambda s: s.pk)


def _recent_use(agent_ids: Sequence[int], since: datetime) -> tuple[list[dict], list[str]]:
    """The resources (with their last use) and scopes the agents used at or after ``since``: the usage selector's
    three queries, and one for the resources' names."""
    used: dict[str, datetime] = {}
    scopes: set[str] = set()
    for found in usage.usage(agent_ids).values():
        for resource, use in found.resources.items():
            if use.last >= since and (resource not in used or use.last > used[resource]):
                used[resource] = use.last
        scopes |= found.scopes_used_since(since)
    return _named(used), sorted(scopes)


def _named(used: dict[str, datetime]) -> list[dict]:
    names = dict(ResourceServer.objects.filter(identifier__in=[r for r in used if r])
                 .values_list("identifier", "name")) if any(used) else {}
    return [{"resource": resource, "name": names.get(resource, "") if resource else "the portal (no resource named)",
             "last_used_at": last} for resource, last in sorted(used.items())]


def _people(agent_ids: Sequence[int], extra: Iterable[tuple[User, str]] = ()) -> list[Person]:
    """The agents' owners and sponsors and everyone in ``extra``: the active people, not agent users (who have no
    inbox), each once with every reason they are told. One query (plus none for ``extra``)."""
    found: dict[int, Person] = {}

    def add(user: User, role: str) -> None:
        if not user.is_active or user.kind != UserKind.HUMAN:
            return
        person = found.setdefault(user.pk, Person(user))
        if role not in person.roles:
            person.roles.append(role)

    rows = (AgentUserObjectPermission.objects.filter(content_object_id__in=list(agent_ids))
            .select_related("user", "permission").order_by("user__username"))
    for row in rows:
        if row.permission.codename in ROLE_WORDS:
            add(row.user, ROLE_WORDS[row.permission.codename])
    for user, role in extra:
        add(user, role)
    return sorted(found.values(), key=lambda person: person.user.username)


def _applies(agent: Agent, action: str) -> bool:
    if agent.status == AgentStatus.RETIRED:
        return False
    return not (action == "disable" and agent.status == AgentStatus.DISABLED)


# --- the previews --------------------------------------------------------------------------------------------------


def agents_preview(agents: Sequence[Agent], action: str, now: datetime | None = None) -> BlastRadius:
    """Disabling or retiring ``agents``: their live tokens are revoked, their queued and running runs cancelled
    (so their sessions have none in progress), their schedules stop; retiring also ends their assignments and
    revokes every credential. Agents the action does not change (retired, or already disabled for a disable) are
    listed as skipped. Eight queries for one agent or two hundred."""
    if action not in AGENT_ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    now = now or timezone.now()
    since = now - WINDOW
    changed = [agent for agent in agents if _applies(agent, action)]
    ids = [agent.pk for agent in changed]
    radius = BlastRadius(action=action, agents=changed, skipped=[a for a in agents if not _applies(a, action)],
                         since=since)
    if not ids:
        return radius
    radius.tokens = _live_tokens(AccessToken.objects.filter(agent_id__in=ids), now)
    radius.runs, radius.sessions = _runs_and_sessions(ids)
    radius.schedules = [agent for agent in changed if agent.status == AgentStatus.ACTIVE
                        and agent.schedule_period_seconds and not agent.schedule_paused]
    radius.resources, radius.scopes = _recent_use(ids, since)
    if action == "retire":
        radius.assignments = Assignment.objects.filter(agent_id__in=ids, status__in=[
            AssignmentStatus.ACTIVE, AssignmentStatus.PENDING]).count()
        radius.agents_without_credential = list(changed)
    radius.people = _agents_people(ids, radius.runs, radius.sessions)
    return radius


def _agents_people(agent_ids: Sequence[int], runs: Sequence[Run], sessions: Sequence[Session]) -> list[Person]:
    extra = [(run.started_by, "started a run that stops") for run in runs if run.started_by]
    extra += [(session.opened_by, "has a session in progress") for session in sessions]
    return _people(agent_ids, extra)


def people_told_for_agents(agent_ids: Sequence[int]) -> list[Person]:
    """Whom stopping these agents tells: the same people as ``agents_preview`` lists. Two queries; read before the
    runs are cancelled (``governance.impact.apps``)."""
    runs, sessions = _runs_and_sessions(agent_ids)
    return _agents_people(agent_ids, runs, sessions)


def _credential_agent(credential) -> Agent | None:
    if isinstance(credential, FederatedCredential):
        return credential.agent
    return credential.identity.agent


def usable_credentials_left(agent: Agent, credential, now: datetime) -> int:
    """How many credentials the agent can still authenticate with once ``credential`` is revoked: its secrets and
    keys in force, its own federated credentials and its blueprint's defaults. One query."""
    secrets = Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True, expires_at__gt=now)
    keys = KeyCredential.objects.filter(identity__agent=agent, revoked_at__isnull=True, expires_at__gt=now)
    rules = FederatedCredential.objects.filter(Q(agent=agent) | Q(blueprint_id=agent.blueprint_id),
                                               revoked_at__isnull=True)
    left = {Credential: secrets, KeyCredential: keys, FederatedCredential: rules}
    left[type(credential)] = left[type(credential)].exclude(pk=credential.pk)
    first, *rest = [queryset.order_by().values("pk") for queryset in left.values()]  # SQLite: no ORDER BY in a union
    return first.union(*rest, all=True).count()


def credential_preview(credential, now: datetime | None = None) -> BlastRadius:
    """Revoking one credential of an agent: no token is revoked (tokens already issued run to their short expiry,
    counted in ``tokens_kept``), but callers that sign in with it stop getting tokens; when it is the agent's last
    usable credential the agent gets no new token at all. ``resources`` are those reached in the last 7 days with
    a credential of this kind (the sign-in log records the kind, and the issuer of a federated one)."""
    now = now or timezone.now()
    since = now - WINDOW
    agent = _credential_agent(credential)
    radius = BlastRadius(action="revoke", agents=[agent], since=since)
    radius.tokens_kept = AccessToken.objects.filter(agent=agent, revoked_at__isnull=True, expires_at__gt=now).count()
    if usable_credentials_left(agent, credential, now) == 0:
        radius.agents_without_credential = [agent]
    kind = {Credential: "secret", KeyCredential: "key", FederatedCredential: "federated"}[type(credential)]
    signins = SignIn.objects.filter(agent=agent, outcome=SignInOutcome.SUCCESS, at__gte=since, credential_type=kind)
    if isinstance(credential, FederatedCredential):
        signins = signins.filter(credential_issuer=credential.issuer)
    used: dict[str, datetime] = {}
    scopes: set[str] = set()
    for resource, granted, at in signins.order_by().values_list("resource", "granted_scopes", "at")[:5000]:
        used[resource] = max(at, used.get(resource, at))
        scopes.update(s for s in (granted if isinstance(granted, list) else []) if s)
    radius.resources, radius.scopes = _named(used), sorted(scopes)
    radius.people = _people([agent.pk])
    return radius


def assignment_preview(assignment: Assignment, now: datetime | None = None) -> BlastRadius:
    """Ending an assignment early: the live tokens carrying one of its permissions are revoked (the same selector
    as the revocation), so runs holding one of those tokens lose it; ``resources`` and ``scopes`` are where the
    package's permissions were used in the last 7 days."""
    return _assignments_radius("end", [assignment], now)


def package_preview(package: AccessPackage, now: datetime | None = None) -> BlastRadius:
    """Removing an access package: every open (pending or active) assignment of it ends, with what each ending
    stops (``assignment_preview``), read for all of them at once."""
    assignments = list(Assignment.objects.filter(package=package, status__in=[
        AssignmentStatus.PENDING, AssignmentStatus.ACTIVE]).select_related("agent", "package", "requested_by"))
    return _assignments_radius("remove", assignments, now)


def people_told_for_assignments(assignments: Sequence[Assignment]) -> list[Person]:
    """Whom ending these assignments tells: the same people as their preview lists. Read before the tokens are
    revoked (``governance.impact.apps``)."""
    return _assignments_radius("remove", assignments, None).people


def _assignments_radius(action: str, assignments: Sequence[Assignment], now: datetime | None) -> BlastRadius:
    """Eight queries for one assignment or a thousand."""
    now = now or timezone.now()
    since = now - WINDOW
    agents = list({a.agent_id: a.agent for a in assignments}.values())
    radius = BlastRadius(action=action, agents=agents, since=since, assignments=len(assignments))
    if not assignments:
        return radius
    radius.tokens = list(AccessToken.objects.filter(pk__in=signin_tokens.tokens_carrying(assignments, now))
                         .order_by("agent_id", "pk"))
    run_ids = {token.run_id for token in radius.tokens if token.run_id}
    radius.runs = list(Run.objects.filter(pk__in=run_ids).select_related("agent", "started_by", "session__opened_by")
                       .order_by("pk")) if run_ids else []
    radius.sessions = sorted({run.session.pk: run.session for run in radius.runs if run.session}.values(),
                             key=lambda s: s.pk)
    by_id = {agent.pk: agent for agent in agents}
    for session in radius.sessions:
        session.agent = by_id[session.agent_id]
    names_of_package: dict[int, set[str]] = {}
    for package_id, name in AccessPackage.permissions.through.objects.filter(
            accesspackage_id__in={a.package_id for a in assignments}).values_list("accesspackage_id",
                                                                                  "permission__name"):
        names_of_package.setdefault(package_id, set()).add(name)
    names = set().union(*names_of_package.values()) if names_of_package else set()
    if names:
        rows = SignIn.objects.filter(agent_id__in=list(by_id), outcome=SignInOutcome.SUCCESS, at__gte=since)
        if connection.features.supports_json_field_contains:  # PostgreSQL: only the rows granting one of them
            carrying = Q()
            for name in sorted(names):
                carrying |= Q(granted_scopes__contains=[name])
            rows = rows.filter(carrying)
        used: dict[str, datetime] = {}
        scopes: set[str] = set()
        for resource, granted, at in rows.order_by().values_list("resource", "granted_scopes", "at")[:5000]:
            granted = names.intersection(granted if isinstance(granted, list) else [])
            if granted:  # SQLite cannot ask JSON containment: the same filter, read here
                used[resource] = max(at, used.get(resource, at))
                scopes.update(granted)
        radius.resources, radius.scopes = _named(used), sorted(scopes)
    extra = [(a.requested_by, "requested the access") for a in assignments if a.requested_by]
    extra += [(run.started_by, "started a run that loses its token") for run in radius.runs if run.started_by]
    radius.people = _people(list(by_id), extra)
    return radius
