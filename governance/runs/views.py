"""Sessions and runs pages (R10): contributors open sessions with agents, run them and work with their
outputs; owners see everyone's sessions in their workspaces, pause and pace schedules, and curate an agent's memory.

Thin over ``governance.runs.services``: reads through ``governance.runs.policy``'s visibility (a session or run the
user may not see is a 404), every change is one service call (an action the service refuses is a 403, a rule it
enforces is a message). The agent page's panels and the dashboard's card answer the lower layers' signals
(``agents.signals.detail_panels``, ``portal.signals.dashboard_cards``), connected in this app's ``ready``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Count, IntegerField, Max, OuterRef, Prefetch, Subquery, Value, When
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agents import policy as agent_policy
from agents import selectors as agent_selectors
from agents.choices import AgentStatus, PublisherKind
from agents.models import Agent, AgentIdentity
from agents.views import show_secret_once
from governance.runs import builtin as builtin_agents
from governance.runs import policy as run_policy
from governance.runs import services as runs
from governance.runs.builtin.hygiene import LINK_ACTIONS
from governance.runs.choices import RunStatus, RunTrigger
from governance.runs.forms import (
    PERIOD_UNITS,
    FeedbackForm,
    RunInputsForm,
    ScheduleForm,
    SessionOpenForm,
    SponsorChoiceForm,
)
from governance.runs.models import Feedback, Run, Session
from portal import rbac
from portal.choices import UserKind
from portal.models import User, WorkspaceMembership
from portal.network import client_ip
from portal.viewutils import act, flash_errors, flash_form_errors, page

LEVEL_ORDER = {"critical": 4, "high": 3, "medium": 2, "low": 1}
NOTHING_TO_APPLY = ("", "review")
SESSION_OPTIONS = 500  # agents offered when opening a session (the current workspace's, by name)
PEOPLE_OPTIONS = 500  # people offered as a new sponsor (the run's workspace's active members)
TIMELINE_PAGE = 20
RECENT_RUNS = 5
MEMORY_ITEMS = 20
DASHBOARD_AGENTS = 8
TOP_FINDINGS = 5
MANAGE_SCHEDULE = "Only the agent's owners change its schedule."
#: How a finding's suggested action reads, and what an Apply that cannot be undone says before it goes ahead.
ACTION_LABELS = {"rotate": "Rotate the client secret", "remove_grant": "End the access package assignment",
                 "add_sponsor": "Add a sponsor", "retire": "Retire the agent", "review": "Review (nothing to apply)",
                 "add_federated_credential": "Add a federated credential",
                 "create_policy": "Create the suggested report-only policy", "enable_policy": "Turn the policy on"}
CONFIRMS = {"rotate": "Issue a new client secret for {subject}? It is shown once; the current one stays valid for a "
                      "short overlap.",
            "remove_grant": "End this access package assignment of {subject}? The permissions it carried end now.",
            "retire": "Retire {subject}? Its credentials, tokens and permissions end now, and it cannot be undone.",
            "enable_policy": "Turn on {subject}? It starts blocking the agents it targets."}


# --- small helpers --------------------------------------------------------------------------------------------
def human_period(seconds: int) -> str:
    """3600 → "Every hour", 7200 → "Every 2 hours", 0 → "On demand only"."""
    if not seconds:
        return "On demand only"
    for unit, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % unit == 0:
            count = seconds // unit
            return f"Every {name}" if count == 1 else f"Every {count} {name}s"
    return f"Every {seconds} seconds"  # pragma: no cover (every integer is a whole number of seconds)


def human_duration(seconds: float | None) -> str:
    """0.04 → "0.04 s", 75 → "1 min 15 s"."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {rest} s"


def _period_initial(seconds: int) -> dict:
    for unit, _name in reversed(PERIOD_UNITS):
        if seconds and seconds % unit == 0:
            return {"every": seconds // unit, "unit": unit}
    return {"every": seconds // 60 if seconds else 0, "unit": 60}


def _applicable(finding: dict) -> bool:
    """A finding with something to carry out: an action other than "review", or a suggested policy."""
    action = finding.get("action") or ""
    return bool(finding.get("suggested_policy")) or (action not in NOTHING_TO_APPLY and action not in LINK_ACTIONS)


def _link(finding: dict) -> str:
    """Where a person carries out a finding's action on a page (an agent's credentials page), or "": built from the
    action and the agent's id, never from text in the output (a run's output is its executor's to write)."""
    agent_id = finding.get("agent_id")
    url_name = LINK_ACTIONS.get(finding.get("action") or "")
    if url_name is None or not isinstance(agent_id, int) or isinstance(agent_id, bool) or agent_id <= 0:
        return ""
    return reverse(url_name, args=[agent_id])


#: Actions applied many at a time from a run's page: those that need no choice (a sponsor) and show nothing once
#: (a new secret); each still goes through ``suggestion_apply`` and its own audit event.
BULK_APPLY_ACTIONS = ("remove_grant", "retire", "create_policy", "enable_policy")
#: At most this many findings applied in one request.
BULK_APPLY_MAX = 200


def findings_filtered(rows: list[dict], params) -> tuple[list[dict], dict]:
    """The findings narrowed by ``kind``, ``agent`` (the finding's subject) and ``level`` from the query string, and
    the counts by kind and by agent over all of them (the page's groups, each a filter link)."""
    chosen = {key: (params.get(key) or "").strip() for key in ("kind", "agent", "level")}
    kinds: dict[str, int] = {}
    agents: dict[str, int] = {}
    for row in rows:
        kinds[row["kind"] or "other"] = kinds.get(row["kind"] or "other", 0) + 1
        if row["subject"]:
            agents[row["subject"]] = agents.get(row["subject"], 0) + 1
    shown = [row for row in rows
             if (not chosen["kind"] or (row["kind"] or "other") == chosen["kind"])
             and (not chosen["agent"] or row["subject"] == chosen["agent"])
             and (not chosen["level"] or row["level"] == chosen["level"])]
    groups = {"kinds": sorted(kinds.items(), key=lambda item: (-item[1], item[0])),
              "agents": sorted(agents.items(), key=lambda item: (-item[1], item[0])), "chosen": chosen,
              "total": len(rows), "filtered": any(chosen.values())}
    return shown, groups


def finding_rows(findings) -> list[dict]:
    """The run's findings for a table, highest level first (the index is the finding's place in the output, which
    is what ``suggestion_apply`` takes)."""
    rows = []
    for index, finding in enumerate(findings or []):
        if not isinstance(finding, dict):
            continue
        action = str(finding.get("action") or "")
        suggested = finding.get("suggested_policy") if isinstance(finding.get("suggested_policy"), dict) else {}
        targets = suggested.get("agents") if isinstance(suggested.get("agents"), list) else []
        subject = str(finding.get("agent") or finding.get("policy")
                      or (f"{len(targets)} agents" if len(targets) > 1 else ""))
        rows.append({"index": index, "level": str(finding.get("level") or ""), "kind": finding.get("kind") or "",
                     "subject": subject, "detail": finding.get("detail") or "", "action": action,
                     "action_label": ACTION_LABELS.get(action, action.replace("_", " ").capitalize() or "—"),
                     "confirm": CONFIRMS.get(action, "").format(subject=subject or "the agent"),
                     "suggested_policy": suggested, "applicable": _applicable(finding), "link": _link(finding),
                     "applied": finding.get("applied") if isinstance(finding.get("applied"), dict) else None})
        row = rows[-1]
        row["bulk"] = bool(row["applicable"] and not row["applied"] and not row["link"]
                           and (action in BULK_APPLY_ACTIONS or (not action and suggested)))
    return sorted(rows, key=lambda r: (-LEVEL_ORDER.get(r["level"], 0), r["index"]))


def _start_problem(agent: Agent) -> str:
    """Why nobody can start a run of this agent now ("" when they can)."""
    if agent.status != AgentStatus.ACTIVE:
        return f"{agent.name} is {agent.get_status_display().lower()}: it cannot run until it is active."
    return runs.runnable_problem(agent)


def _usable_agents(user):
    """Active agents the user may use whose runs the portal can execute."""
    usable = agent_policy.agents_usable_by(user).filter(status=AgentStatus.ACTIVE)
    return runs.runnable(usable).select_related("blueprint", "workspace")


def _sponsor_candidates(workspace) -> list[User]:
    """Active people of the run's workspace, for an ``add_sponsor`` finding (one query)."""
    members = WorkspaceMembership.objects.filter(workspace=workspace).values("user_id")
    return list(User.objects.filter(pk__in=members, is_active=True, kind=UserKind.HUMAN)
                .order_by("username")[:PEOPLE_OPTIONS])


def _session_or_404(user, session_id: int) -> Session:
    return get_object_or_404(run_policy.sessions_visible_to(user).select_related(
        "agent__blueprint", "agent__workspace", "opened_by"), pk=session_id)


def _run_or_404(user, run_id: int) -> Run:
    return get_object_or_404(run_policy.runs_visible_to(user).select_related(
        "agent__blueprint", "agent__workspace", "session__opened_by", "started_by", "delegated_for",
        "cancelled_by"), pk=run_id)


def _can_run_in(user, session: Session) -> bool:
    """Only the session's opener runs agents in it (``runs.run_start``), while they may use the agent."""
    return session.opened_by_id == user.pk and agent_policy.can_use_agent(user, session.agent)


# --- sessions ---------------------------------------------------------------------------------------------------
@login_required
@require_GET
def session_list(request):
    user = request.user
    sessions = run_policy.sessions_visible_to(user)
    agent_options = Agent.objects.filter(pk__in=sessions.values("agent_id")).only("pk", "name").order_by("name", "pk")
    agent_filter = request.GET.get("agent", "").strip()
    if agent_filter.isdigit():
        sessions = sessions.filter(agent_id=int(agent_filter))
    else:
        agent_filter = ""
    mine = request.GET.get("mine") == "1"
    if mine:
        sessions = sessions.filter(opened_by=user)
    sessions = (sessions.select_related("agent__workspace", "opened_by")
                .annotate(run_count=Count("runs"), last_run_at=Max("runs__created_at"))
                .order_by("-created_at", "-pk"))
    query = urlencode({k: v for k, v in (("agent", agent_filter), ("mine", "1" if mine else "")) if v})
    return render(request, "governance/runs/session_list.html", {
        "page": page(request, sessions), "agent_options": list(agent_options), "agent_filter": agent_filter,
        "mine": mine, "query": query, "sees_others": rbac.owns_any_workspace(user)})


@login_required
@require_http_methods(["GET", "POST"])
def session_create(request):
    """Open a session: only with an agent the person may use and the portal can run (``?agent=`` preselects)."""
    user = request.user
    requested = (request.POST if request.method == "POST" else request.GET).get("agent", "").strip()
    chosen, problem = None, ""
    if requested.isdigit():
        chosen = get_object_or_404(agent_policy.agents_visible_to(user).select_related("blueprint", "workspace"),
                                   pk=int(requested))
        rbac.require(agent_policy.can_use_agent(user, chosen),
                     "Only its creator and its owners use a user-scoped agent.")
        problem = _start_problem(chosen)
    usable = _usable_agents(user)
    usable = usable.filter(workspace=request.workspace) if request.workspace else usable.none()
    offered = list(usable.order_by("name", "pk")[:SESSION_OPTIONS])
    if chosen is not None and not problem and chosen.pk not in {a.pk for a in offered}:
        offered.insert(0, chosen)  # an agent of another workspace, opened from its page
    form = SessionOpenForm(request.POST if request.method == "POST" else None, agents=offered,
                           initial={"agent": chosen.pk if chosen is not None and not problem else None})
    if request.method == "POST" and form.is_valid():
        agent = {a.pk: a for a in offered}[form.cleaned_data["agent"]]
        session = runs.session_open(actor=user, agent=agent, title=form.cleaned_data["title"])
        messages.success(request, f"Session opened with {agent.name}. Fill in the inputs and run it.")
        return redirect("session-detail", session_id=session.pk)
    return render(request, "governance/runs/session_create.html", {
        "form": form, "offered": offered, "chosen": chosen, "problem": problem})


def _timeline(request, session: Session):
    runs_of_session = (session.runs.select_related("started_by", "cancelled_by")
                       .prefetch_related(Prefetch("feedback", queryset=Feedback.objects.select_related("author")))
                       .order_by("-created_at", "-pk"))
    timeline = page(request, runs_of_session, per_page=TIMELINE_PAGE)
    for run in timeline:
        rows = finding_rows(run.findings)
        run.top_findings, run.more_findings = rows[:TOP_FINDINGS], max(len(rows) - TOP_FINDINGS, 0)
    return timeline


def _session_context(request, session: Session, form: RunInputsForm | None = None) -> dict:
    agent = session.agent
    can_run = _can_run_in(request.user, session)
    return {"session": session, "agent": agent, "page": _timeline(request, session), "can_run": can_run,
            "problem": _start_problem(agent),
            "form": form or RunInputsForm(declared=agent.blueprint.inputs)}


@login_required
@require_GET
def session_detail(request, session_id: int):
    session = _session_or_404(request.user, session_id)
    return render(request, "governance/runs/session_detail.html", _session_context(request, session))


@login_required
@require_POST
def run_start(request, session_id: int):
    session = _session_or_404(request.user, session_id)
    rbac.require(_can_run_in(request.user, session), "Only the person who opened the session runs agents in it.")
    form = RunInputsForm(request.POST, declared=session.agent.blueprint.inputs)
    if form.is_valid():
        try:
            run = runs.run_start(actor=request.user, session=session, inputs=form.inputs(), ip=client_ip(request))
        except ValidationError as error:
            form.add_start_errors(error)
        else:
            if run.status == RunStatus.REFUSED:
                messages.warning(request, f"Run #{run.pk} was refused: {run.refused_reason}")
            else:
                messages.success(request, f"Run #{run.pk} is queued; its output appears here when it finishes.")
            return redirect("run-detail", run_id=run.pk)
    return render(request, "governance/runs/session_detail.html", _session_context(request, session, form))


# --- runs -------------------------------------------------------------------------------------------------------
def _status_context(request, run: Run, *, compact: bool = False) -> dict:
    """The status-and-output block of a run (the page and its htmx fragment render the same context)."""
    user = request.user
    rows, groups = findings_filtered(finding_rows(run.findings), request.GET)
    has_actions = run.status == RunStatus.SUCCEEDED and builtin_agents.builtin_for(run.agent.blueprint) is not None
    # The findings are about the agents of the run's workspace: its owners apply them (the services decide anyway,
    # so a contributor's attempt is a 403, not a loophole).
    can_apply = has_actions and rbac.has_workspace_perm(user, run.agent.workspace, rbac.MANAGE_MEMBERS)
    needs_people = can_apply and any(r["applicable"] and r["action"] == "add_sponsor" for r in rows)
    people = _sponsor_candidates(run.agent.workspace) if needs_people and not compact else []
    took = (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else None
    return {"run": run, "findings": rows, "can_apply": can_apply, "has_actions": has_actions, "compact": compact,
            "finding_groups": groups, "bulk_apply": can_apply and any(row["bulk"] for row in rows),
            "duration": human_duration(took),
            "sponsor_form": SponsorChoiceForm(people=people) if needs_people else None,
            "can_cancel": not run.is_finished and run_policy.can_cancel_run(user, run)}


def _run_context(request, run: Run, feedback_form: FeedbackForm | None = None) -> dict:
    feedback = list(run.feedback.select_related("author").order_by("-created_at", "-pk"))
    mine = next((f for f in feedback if f.author_id == request.user.pk), None)
    if feedback_form is None:
        feedback_form = FeedbackForm(initial={"rating": mine.rating, "comment": mine.comment} if mine else None)
    return {**_status_context(request, run), "feedback": feedback, "my_feedback": mine,
            "feedback_form": feedback_form, "can_rate": run.status == RunStatus.SUCCEEDED}


@login_required
@require_GET
def run_detail(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    return render(request, "governance/runs/run_detail.html", _run_context(request, run))


@login_required
@require_GET
def run_status(request, run_id: int):
    """The htmx fragment: polls every 2 s while the run is queued or running; once it has ended the fragment comes
    without its trigger (polling stops) and asks the page to reload, so the feedback form and output appear."""
    run = _run_or_404(request.user, run_id)
    response = render(request, "governance/runs/partials/run_status.html",
                      _status_context(request, run, compact=request.GET.get("compact") == "1"))
    if run.is_finished and request.htmx:
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def run_cancel(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    act(request, runs.run_cancel, lambda r: f"Run #{r.pk} is cancelled; its token has ended.", run=run)
    return redirect("run-detail", run_id=run.pk)


@login_required
@require_POST
def run_feedback(request, run_id: int):
    run = _run_or_404(request.user, run_id)
    form = FeedbackForm(request.POST)
    if form.is_valid():
        try:
            saved = runs.feedback_give(actor=request.user, run=run, **form.cleaned_data)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, f"Your rating ({saved.rating}/5) is saved in {run.agent.name}'s memory.")
            return redirect(reverse("run-detail", args=[run.pk]) + "#feedback")
    return render(request, "governance/runs/run_detail.html", _run_context(request, run, feedback_form=form))


def _show_secret(request, finding: dict, secret: str, run: Run):
    """A rotated secret, shown once on the agent's secret page (Post/Redirect/Get: never stored, never cached)."""
    identity = AgentIdentity.objects.select_related("agent").filter(agent_id=finding.get("agent_id")).first()
    return show_secret_once(request, identity.agent if identity else run.agent,
                            identity.client_id if identity else "", secret, created=False,
                            back_url=reverse("run-detail", args=[run.pk]), back_label="Back to the run")


@login_required
@never_cache
@require_POST
def run_apply(request, run_id: int, index: int):
    """Apply a built-in agent's finding as the signed-in person; the services it calls decide (403 if they may
    not). A new secret from a rotation is shown once, on the page this redirects to."""
    run = _run_or_404(request.user, run_id)
    finding = run.findings[index] if 0 <= index < len(run.findings or []) else {}
    params = {}
    if isinstance(finding, dict) and finding.get("action") == "add_sponsor":
        form = SponsorChoiceForm(request.POST, people=_sponsor_candidates(run.agent.workspace))
        if not form.is_valid():
            flash_form_errors(request, form)
            return redirect(reverse("run-detail", args=[run.pk]) + "#findings")
        params["user"] = form.cleaned_data["user"]
    try:
        applied = runs.suggestion_apply(actor=request.user, run=run, index=index, params=params)
    except ValidationError as error:
        flash_errors(request, error)
        return redirect(reverse("run-detail", args=[run.pk]) + "#findings")
    messages.success(request, applied.message)
    if applied.secret:
        return _show_secret(request, finding, applied.secret, run)
    return redirect(reverse("run-detail", args=[run.pk]) + "#findings")


@login_required
@require_POST
def run_apply_many(request, run_id: int):
    """Apply the selected findings (``finding`` = their indexes) of one run, each through ``suggestion_apply`` with
    its own audit event, all or nothing: one refusal changes nothing. Only findings whose action needs no choice and
    shows no secret (``BULK_APPLY_ACTIONS``) go together; the rest are applied one by one."""
    run = _run_or_404(request.user, run_id)
    back = reverse("run-detail", args=[run.pk]) + (f"?{request.POST['back']}" if request.POST.get("back") else "") \
        + "#findings"
    try:
        indexes = sorted({int(value) for value in request.POST.getlist("finding")})
    except ValueError:
        indexes = []
    rows = {row["index"]: row for row in finding_rows(run.findings)}
    problems = []
    if not indexes:
        problems.append("Select at least one finding to apply.")
    elif len(indexes) > BULK_APPLY_MAX:
        problems.append(f"Select at most {BULK_APPLY_MAX} findings at a time.")
    for index in indexes:
        row = rows.get(index)
        if row is None:
            problems.append("A selected finding is not in the run's output.")
        elif not row["bulk"]:
            problems.append(f"“{row['detail'][:80]}” is applied on its own (it needs a choice, shows a secret or "
                            f"was applied already).")
    if problems:
        for problem in problems:
            messages.error(request, problem)
        return redirect(back)
    try:
        with transaction.atomic():
            for index in indexes:
                runs.suggestion_apply(actor=request.user, run=run, index=index)
    except ValidationError as error:
        flash_errors(request, error)
        messages.error(request, "Nothing was applied.")
        return redirect(back)
    messages.success(request, f"{len(indexes)} finding{'s' if len(indexes) != 1 else ''} applied.")
    return redirect(back)


# --- an agent's schedule and memory (owners) -----------------------------------------------------------------------
@login_required
@require_POST
def agent_schedule(request, agent_id: int):
    agent = agent_selectors.agent_get(request.user, agent_id)
    rbac.require(agent_policy.can_manage_agent(request.user, agent), MANAGE_SCHEDULE)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        act(request, runs.schedule_update, _schedule_message, agent=agent, **form.changes())
    else:
        flash_form_errors(request, form)
    return redirect(reverse("agent-detail", args=[agent.pk]) + "#schedule")


def _schedule_message(agent: Agent) -> str:
    if not agent.schedule_period_seconds:
        return f"{agent.name} runs on demand only."
    if agent.schedule_paused:
        return f"{agent.name}'s schedule is paused ({human_period(agent.schedule_period_seconds).lower()})."
    return (f"{agent.name} runs {human_period(agent.schedule_period_seconds).lower()}; next run "
            f"{agent.next_run_at:%Y-%m-%d %H:%M} UTC.")


@login_required
@require_POST
def agent_feedback_delete(request, agent_id: int, feedback_id: int):
    agent = agent_selectors.agent_get(request.user, agent_id)
    feedback = get_object_or_404(Feedback.objects.select_related("author", "agent__workspace"), pk=feedback_id,
                                 agent=agent)
    act(request, runs.feedback_delete, lambda _: f"The feedback is removed from {agent.name}'s memory.",
        feedback=feedback)
    return redirect(reverse("agent-detail", args=[agent.pk]) + "#memory")


# --- panels for the agent page and the dashboard (registered into the lower layers' hooks) ----------------------
def agent_panels(user, agent: Agent) -> list[dict]:
    """The agent page's "Open a session" button, schedule, recent runs and memory (an owner may delete an item), in
    a fixed number of queries whatever the number of runs and feedback. Memory lists the feedback on runs the user
    may see: a session's runs stay its opener's and the owners'."""
    visible_runs = run_policy.runs_visible_to(user).filter(agent=agent)
    recent = list(visible_runs.select_related("started_by", "session").order_by("-created_at", "-pk")[:RECENT_RUNS])
    last_scheduled = (Run.objects.filter(agent=agent, trigger=RunTrigger.SCHEDULE).order_by("-created_at", "-pk")
                      .only("pk", "status", "created_at", "agent_id", "session_id").first())
    memory = Feedback.objects.filter(agent=agent, run__in=visible_runs.values("pk"))
    can_manage = agent_policy.can_manage_agent(user, agent)
    return [
        {"template": "governance/runs/agent_actions.html", "slot": "actions", "agent": agent,
         "can_use": agent_policy.can_use_agent(user, agent), "problem": _start_problem(agent)},
        {"template": "governance/runs/agent_schedule.html", "slot": "side", "agent": agent,
         "period": human_period(agent.schedule_period_seconds), "last_scheduled": last_scheduled,
         "can_manage": can_manage and agent.status != AgentStatus.RETIRED,
         "form": ScheduleForm(initial=_period_initial(agent.schedule_period_seconds)), "units": PERIOD_UNITS},
        {"template": "governance/runs/agent_runs.html", "slot": "main", "agent": agent, "recent": recent,
         "memory": list(memory.select_related("author").order_by("-created_at", "-pk")[:MEMORY_ITEMS]),
         "memory_total": memory.count(), "can_manage": can_manage},
    ]


def builtin_findings_card(request) -> dict | None:
    """The dashboard's "Findings from built-in agents": each built-in agent the user sees (the current workspace's
    first), its latest succeeded run the user may see and that run's top findings — three queries in all."""
    user = request.user
    if not user.is_authenticated:
        return None
    latest = (run_policy.runs_visible_to(user).filter(agent=OuterRef("pk"), status=RunStatus.SUCCEEDED)
              .order_by("-created_at", "-pk").values("pk")[:1])
    here = request.workspace.pk if getattr(request, "workspace", None) else None
    agents = list(agent_policy.agents_visible_to(user)
                  .filter(blueprint__publisher_kind=PublisherKind.MICROSOFT,
                          blueprint__name__in=list(builtin_agents.BUILTINS))
                  .exclude(status=AgentStatus.RETIRED).select_related("workspace", "blueprint")
                  .annotate(latest_run_id=Subquery(latest),
                            elsewhere=Case(When(workspace_id=here, then=Value(0)), default=Value(1),
                                           output_field=IntegerField()))
                  .order_by("elsewhere", "workspace__name", "name", "pk")[:DASHBOARD_AGENTS + 1])
    more = len(agents) > DASHBOARD_AGENTS
    agents = agents[:DASHBOARD_AGENTS]
    latest_runs = {run.pk: run for run in Run.objects.filter(
        pk__in=[a.latest_run_id for a in agents if a.latest_run_id]).only("pk", "created_at", "finished_at",
                                                                            "findings", "agent_id")}
    rows = []
    for agent in agents:
        run = latest_runs.get(agent.latest_run_id)
        found = finding_rows(run.findings) if run else []
        rows.append({"agent": agent, "run": run, "findings": found[:TOP_FINDINGS],
                     "more": max(len(found) - TOP_FINDINGS, 0), "total": len(found)})
    return {"template": "governance/runs/dashboard_card.html", "rows": rows, "more": more}
