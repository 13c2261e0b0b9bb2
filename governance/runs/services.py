"""Sessions and runs: a run of an agent is governed exactly like a token request, and executes in a worker.

``authorise_run`` is the decision point for run starts: the agent must be able to act now (its status, expiry and,
for a user-account agent, its user — R1), its scopes are its effective permissions (automatic ∪ active packages,
never privileged) — bounded by its user's rights for a user-account agent, and by the starter's rights when a person
runs a user-scoped agent (a delegated run, R13) — and conditional access is evaluated with the same function as at
token issuance (R20: block wins, report-only only records). It decides twice: when the run is queued and again when
a worker picks it up (a policy or a disabled user in between still stops it).

Life of a run: ``run_start`` (a person) or the ``run_scheduled_agents`` job (the agent's schedule, from its
blueprint's triggers) records it *queued* or *refused* and queues ``run_execute`` on a Celery worker. There it gets
its own access token (recorded in the sign-in log, so the risk job sees it) and becomes *running*:

- a built-in agent (``governance.runs.builtin``) executes in the worker and reads only through the portal API with
  that token (``governance.runs.portal_client``), within the run's time limit;
- an external agent's blueprint names an executor URL: the run request (inputs, the token, a callback URL) is POSTed
  to it and the executor posts the outputs back to ``/api/v1/runs/<id>/outputs/`` with the same token
  (``run_outputs_receive``); an executor that does not answer, refuses, or never calls back fails the run.

It ends *succeeded* or *failed* (output: structured findings and a readable summary, or the error), or *cancelled*;
its token is revoked as it ends. ``expire_runs`` fails runs past their deadline. Every change is one audit event.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agents import policy as agent_policy
from agents.choices import AgentScope, AgentStatus, IdentityType, PublisherKind
from agents.inputs import declared_inputs
from agents.models import Agent
from governance.conditional_access import services as conditional_access
from governance.runs import builtin as builtin_agents
from governance.runs import policy as run_policy
from governance.runs.choices import RunStatus, RunTrigger
from governance.runs.models import Feedback, Run, Session
from governance.runs.portal_client import PortalClient, PortalReadError, RunTimeLimit
from governance.signin import tokens
from portal import audit, celery, jobs
from portal.models import User

log = logging.getLogger(__name__)

MIN_PERIOD_SECONDS = 60
MAX_PERIOD_SECONDS = 31 * 24 * 3600
QUEUED_TOO_LONG = timedelta(hours=1)
MAX_SUMMARY = 20_000
MAX_FINDINGS = 500
JOB_BATCH = 100


class RunEnded(ValidationError):
    """The run has already ended (finished, cancelled, timed out): nothing more is accepted for it (HTTP 409)."""

    def __init__(self, message: str):
        super().__init__(message, code="already_decided")


@dataclass(frozen=True)
class RunDecision:
    allowed: bool
    scopes: frozenset[str] = frozenset()
    reason: str = ""
    policies: list[dict] = field(default_factory=list)
    delegated_for: User | None = None


def authorise_run(agent: Agent, started_by: User | None, *, now: datetime | None = None,
                  ip: str | None = None) -> RunDecision:
    """May this agent run now, started by this person (None: its schedule), and with which scopes?"""
    now = now or timezone.now()
    why = tokens.refusal(agent, now)
    if why:
        return RunDecision(False, reason=why)
    held = tokens.effective_scopes(agent, now)
    if agent.identity_type == IdentityType.USER_ACCOUNT:
        held = held.narrowed(tokens.user_rights(agent.run_as_user))
    delegated_for = None
    if started_by is not None and agent.scope == AgentScope.USER:
        held = held.narrowed(tokens.user_rights(started_by))  # a delegated run: never more than the starter's
        delegated_for = started_by
    evaluation = conditional_access.evaluate(
        conditional_access.agent_facts(agent),
        conditional_access.AccessContext(ip=ip, at=now, scopes=held.scopes))
    verdicts = evaluation.applied()
    if not evaluation.allowed:
        return RunDecision(False, reason=f"blocked by conditional access: {evaluation.blocked_by}", policies=verdicts)
    return RunDecision(True, scopes=held.scopes, policies=verdicts, delegated_for=delegated_for)


def _missing_inputs(agent: Agent, inputs: dict) -> list[str]:
    """The labels of the required inputs left empty."""
    return [item.label for item in declared_inputs(agent.blueprint.inputs)
            if item.required and not str(inputs.get(item.name, "")).strip()]


def _clean_inputs(agent: Agent, inputs: dict | None) -> dict:
    """The declared inputs only, as trimmed text, each checked against its declared type and limits
    (``agents.inputs``). Every problem is reported at once, keyed by the input's name, in the words of the form
    (labels, not manifest names); nothing is recorded for a refused start. An undeclared name is refused: it would
    be silently ignored."""
    declared = {item.name: item for item in declared_inputs(agent.blueprint.inputs)}
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ValidationError({"inputs": f"{agent.blueprint.display_name} takes no input called "
                                         f"{', '.join(unknown)}."})
    cleaned = {name: str(value).strip() for name, value in inputs.items() if value is not None}
    problems: dict[str, str] = {}
    for name, item in declared.items():
        value = cleaned.get(name, "")
        if not value:
            if item.required:
                problems[name] = f"Fill in {item.label}: {agent.blueprint.display_name} needs it."
            continue
        problem = item.check(value)
        if problem:
            problems[name] = problem
    if problems:
        raise ValidationError(problems)
    return {name: value for name, value in cleaned.items() if value}


def runnable(agents):
    """The agents among ``agents`` (a queryset) whose runs the portal can execute, as one filter: the query form
    of ``runnable_problem``."""
    return agents.filter(Q(blueprint__executor_url__gt="")
                         | Q(blueprint__publisher_kind=PublisherKind.MICROSOFT,
                             blueprint__name__in=list(builtin_agents.BUILTINS)))


def runnable_problem(agent: Agent) -> str:
    """Why the portal cannot execute this agent's runs at all ("" when it can): built-in or an executor URL."""
    if builtin_agents.builtin_for(agent.blueprint) is not None or agent.blueprint.executor_url:
        return ""
    return ("The portal cannot run this agent: it is not one of the built-in agents and its manifest names no "
            "executor URL to send its runs to.")


def _record(run: Run, decision: RunDecision, actor: User | None) -> Run:
    run.scopes = sorted(decision.scopes)
    run.delegated_for = decision.delegated_for
    run.policies = decision.policies
    run.time_limit_seconds = settings.RUN_TIME_LIMIT_SECONDS
    if decision.allowed:
        run.status = RunStatus.QUEUED
    else:
        run.status, run.refused_reason, run.finished_at = RunStatus.REFUSED, decision.reason[:300], timezone.now()
    run.save()
    if not decision.allowed:
        tokens.run_token_refuse(run, run.refused_reason)
    audit.record(actor=actor, action="run.start" if decision.allowed else "run.refuse", target=run,
                 workspace=run.agent.workspace, after={"agent": run.agent.name, "status": run.status,
                                                       "trigger": run.trigger, "scopes": run.scopes,
                                                       "reason": run.refused_reason})
    if decision.allowed:
        transaction.on_commit(lambda: _enqueue(run.pk))
    return run


def _enqueue(run_id: int) -> None:
    celery.enqueue("governance.execute_run", run_id)


@transaction.atomic
def run_start(*, actor: User, session: Session, inputs: dict | None = None, ip: str | None = None,
              trigger: str = RunTrigger.MANUAL) -> Run:
    """A person runs the session's agent: recorded queued (and sent to a worker once committed) when authorised,
    refused with the reason when not. Only someone who may use the agent (R10), with its required inputs."""
    agent = Agent.objects.select_related("blueprint", "run_as_user", "workspace").get(pk=session.agent_id)
    if not agent_policy.can_use_agent(actor, agent) or session.opened_by_id != actor.pk:
        raise PermissionDenied("You may not run this agent in this session.")
    problem = runnable_problem(agent)
    if problem:
        raise ValidationError(problem)
    inputs = _clean_inputs(agent, inputs)
    decision = authorise_run(agent, actor, ip=ip)
    run = Run(session=session, agent=agent, started_by=actor, inputs=inputs, trigger=trigger)
    return _record(run, decision, actor)


@transaction.atomic
def scheduled_run_start(agent: Agent) -> Run:
    """The agent's schedule starts a run (nobody's rights bound it: the agent's own, like a client-credentials
    token). Defaults of the declared inputs apply."""
    defaults = {item.name: item.default.strip() for item in declared_inputs(agent.blueprint.inputs)}
    run = Run(agent=agent, inputs={k: v for k, v in defaults.items() if v}, trigger=RunTrigger.SCHEDULE)
    if _missing_inputs(agent, run.inputs):
        decision = RunDecision(False, reason="a required input has no default value for a scheduled run")
    else:
        decision = authorise_run(agent, None)
    return _record(run, decision, None)


def session_open(*, actor: User, agent: Agent, title: str = "") -> Session:
    """Open a session with an agent the person may use (R10)."""
    if not agent_policy.can_use_agent(actor, agent):
        raise PermissionDenied("You may not use this agent.")
    with transaction.atomic():
        session = Session.objects.create(agent=agent, opened_by=actor, title=title.strip()[:200])
        audit.record(actor=actor, action="session.open", target=session, workspace=agent.workspace,
                     after={"agent": agent.name, "title": session.title})
    return session


# --- executing (in a worker) ------------------------------------------------------------------------------------
def _locked(run_id: int) -> Run | None:
    return (Run.objects.select_for_update(of=("self",))
            .select_related("agent__blueprint", "agent__workspace", "agent__run_as_user", "started_by",
                            "delegated_for", "session").filter(pk=run_id).first())


def _finish(run: Run, status: str, *, summary: str = "", findings: list | None = None, error: str = "",
            actor: User | None = None, action: str = "run.finish") -> Run:
    """End a locked, unfinished run: its output or error, its token revoked, one audit event."""
    now = timezone.now()
    run.status, run.finished_at = status, now
    run.summary, run.findings, run.error = summary[:MAX_SUMMARY], list(findings or []), error[:500]
    run.save(update_fields=["status", "finished_at", "summary", "findings", "error", "reads", "cancelled_by"])
    tokens.revoke_run_tokens(run, f"run {status}", now)
    audit.record(actor=actor, action=action, target=run, workspace=run.agent.workspace,
                 after={"agent": run.agent.name, "status": status, "findings": len(run.findings),
                        "error": run.error})
    return run


def _begin(run_id: int) -> tuple[Run | None, str]:
    """Queued → running with a fresh decision and the run's token; or refused. Returns the run and token value."""
    with transaction.atomic():
        run = _locked(run_id)
        if run is None or run.status != RunStatus.QUEUED:
            return run, ""
        now = timezone.now()
        starter = run.started_by if run.trigger != RunTrigger.SCHEDULE else None
        decision = authorise_run(run.agent, starter, now=now)
        if not decision.allowed:
            run.status, run.refused_reason, run.finished_at = RunStatus.REFUSED, decision.reason[:300], now
            run.policies, run.scopes = decision.policies, []
            run.save(update_fields=["status", "refused_reason", "finished_at", "policies", "scopes"])
            tokens.run_token_refuse(run, run.refused_reason, now)
            audit.record(actor=None, action="run.refuse", target=run, workspace=run.agent.workspace,
                         after={"agent": run.agent.name, "status": run.status, "reason": run.refused_reason,
                                "at": "execution"})
            return run, ""
        run.status, run.started_at = RunStatus.RUNNING, now
        run.deadline_at = now + timedelta(seconds=run.time_limit_seconds)
        run.scopes, run.policies = sorted(decision.scopes), decision.policies
        run.save(update_fields=["status", "started_at", "deadline_at", "scopes", "policies"])
        _token, value = tokens.run_token_issue(run, expires_at=run.deadline_at, now=now)
        audit.record(actor=None, action="run.begin", target=run, workspace=run.agent.workspace,
                     after={"agent": run.agent.name, "scopes": run.scopes})
        return run, value


def _end(run_id: int, status: str, **output) -> Run:
    """Finish a run unless someone cancelled it (or it timed out) in the meantime: their outcome stands."""
    with transaction.atomic():
        run = _locked(run_id)
        reads = output.pop("reads", None)
        if run.status != RunStatus.RUNNING:
            return run
        if reads is not None:
            run.reads = reads[:200]
        return _finish(run, status, **output)


def run_execute(run_id: int) -> Run | None:
    """The worker's part: begin, then execute a built-in agent here or hand the run to its external executor."""
    run, token = _begin(run_id)
    if run is None or run.status != RunStatus.RUNNING:
        return run
    builtin = builtin_agents.builtin_for(run.agent.blueprint)
    if builtin is not None:
        return _execute_builtin(run, builtin, token)
    if run.agent.blueprint.executor_url:
        return _dispatch(run, token)
    return _end(run.pk, RunStatus.FAILED, error=runnable_problem(run.agent))


def _execute_builtin(run: Run, builtin, token: str) -> Run:
    remaining = (run.deadline_at - timezone.now()).total_seconds()
    client = PortalClient(token, deadline=time.monotonic() + max(remaining, 0))
    try:
        with client:
            output = builtin.execute(client, run)
    except RunTimeLimit:
        return _end(run.pk, RunStatus.FAILED, reads=client.reads,
                    error=f"The run reached its time limit ({run.time_limit_seconds} s).")
    except PortalReadError as failure:
        return _end(run.pk, RunStatus.FAILED, reads=client.reads, error=f"A read was refused: {failure}")
    except ValueError as failure:  # an input the agent cannot use
        return _end(run.pk, RunStatus.FAILED, reads=client.reads, error=str(failure))
    except Exception as failure:  # recorded on the run, never lost; the traceback goes to the worker's log
        log.exception("run %s of %s failed", run.pk, run.agent)
        return _end(run.pk, RunStatus.FAILED, reads=client.reads,
                    error=f"The agent failed: {failure.__class__.__name__}.")
    return _end(run.pk, RunStatus.SUCCEEDED, reads=client.reads, summary=output.summary,
                findings=output.findings)


def callback_url(run: Run) -> str:
    return f"{settings.PORTAL_BASE_URL}/api/v1/runs/{run.pk}/outputs/"


def _dispatch(run: Run, token: str) -> Run:
    """POST the run request to the external executor; it answers 2xx to accept and posts the outputs back later
    (or at once, in the body). The token is in the request body only, never in a log or the audit trail."""
    timeout = settings.RUN_EXECUTOR_TIMEOUT_SECONDS
    identity = getattr(run.agent, "identity", None)
    request = {"run_id": run.pk, "agent": {"id": run.agent.pk, "name": run.agent.name,
                                           "client_id": identity.client_id if identity else None},
               "blueprint": run.agent.blueprint.name, "inputs": run.inputs, "scopes": run.scopes,
               "access_token": token, "token_type": "Bearer", "expires_at": run.deadline_at.isoformat(),
               "callback_url": callback_url(run), "api_url": f"{settings.PORTAL_BASE_URL}/api/v1/"}
    try:
        response = httpx.post(run.agent.blueprint.executor_url, json=request, timeout=timeout,
                              follow_redirects=False, headers={"User-Agent": "agent-identity-portal"})
    except httpx.TimeoutException:
        return _end(run.pk, RunStatus.FAILED, error=f"The executor did not answer within {timeout:g} s.")
    except httpx.HTTPError as failure:
        return _end(run.pk, RunStatus.FAILED,
                    error=f"The executor could not be reached ({failure.__class__.__name__}).")
    if not 200 <= response.status_code < 300:
        return _end(run.pk, RunStatus.FAILED, error=f"The executor refused the run: HTTP {response.status_code}.")
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("summary" in body or "findings" in body):
        status, output = _outputs(body)
        return _end(run.pk, status, **output)
    return Run.objects.get(pk=run.pk)  # accepted: outputs come to the callback


def _outputs(data: dict) -> tuple[str, dict]:
    """Validate an executor's outputs: ``{"status": "succeeded"|"failed", "summary", "findings": [...], "error"}``."""
    if not isinstance(data, dict):
        raise ValidationError("Send a JSON object with summary, findings and status.")
    status = data.get("status", RunStatus.SUCCEEDED)
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED):
        raise ValidationError("status is succeeded or failed.")
    summary, error = data.get("summary", ""), data.get("error", "")
    findings = data.get("findings", [])
    if not isinstance(summary, str) or len(summary) > MAX_SUMMARY:
        raise ValidationError(f"summary is text of at most {MAX_SUMMARY:,} characters.")
    if not isinstance(error, str):
        raise ValidationError("error is text.")
    if not isinstance(findings, list) or len(findings) > MAX_FINDINGS or \
            not all(isinstance(f, dict) for f in findings):
        raise ValidationError(f"findings is a list of at most {MAX_FINDINGS} objects.")
    if status == RunStatus.FAILED and not error:
        error = "The executor reported a failure."
    return status, {"summary": summary, "findings": findings, "error": error}


def run_outputs_receive(*, token, run: Run, data: dict) -> Run:
    """An external executor posts a run's outputs with the run's own token (one use: the token ends with the
    run). Refused for another run's token, and once the run has ended (cancelled, timed out)."""
    if token is None or getattr(token, "run_id", None) != run.pk:
        raise PermissionDenied("Only the run's own access token can post its outputs.")
    status, output = _outputs(data)
    with transaction.atomic():
        locked = _locked(run.pk)
        if locked.status != RunStatus.RUNNING:
            raise RunEnded(f"The run is {locked.get_status_display().lower()}: outputs are no longer accepted.")
        return _finish(locked, status, action="run.outputs", **output)


# --- people acting on runs ------------------------------------------------------------------------------------
def run_cancel(*, actor: User, run: Run) -> Run:
    """Cancel a queued or running run (whoever started it, and the agent's owners): its token ends at once, and a
    worker or executor that finishes later changes nothing."""
    with transaction.atomic():
        locked = _locked(run.pk)
        if locked is None or not run_policy.can_cancel_run(actor, locked):
            raise PermissionDenied("Only whoever started the run and the agent's owners cancel it.")
        if locked.is_finished:
            raise RunEnded(f"The run has already ended ({locked.get_status_display().lower()}).")
        locked.cancelled_by = actor
        return _finish(locked, RunStatus.CANCELLED, error=f"Cancelled by {actor.username}.", actor=actor,
                       action="run.cancel")


def runs_in_progress(agent_ids):
    """The runs that stop when their agents stop: queued (waiting for a worker, scheduled ones included) or running.
    One definition for the blast-radius preview and for ``runs_stop_for_agent`` (docs/blast-radius.md)."""
    return Run.objects.filter(agent_id__in=list(agent_ids), status__in=[RunStatus.QUEUED, RunStatus.RUNNING])


def runs_stop_for_agent(agent: Agent) -> int:
    """An agent was disabled or is being retired (``agents.signals.agent_disabled``, inside that transaction): its
    queued and running runs are cancelled, each with its token revoked and its own audit event, so the preview's
    list of runs is exactly what stops (docs/blast-radius.md). Returns how many."""
    stopped = 0
    for run in (runs_in_progress([agent.pk]).select_for_update(of=("self",))
                .select_related("agent__workspace").order_by("pk")):
        _finish(run, RunStatus.CANCELLED, error=f"Cancelled: {agent.name} was stopped.", action="run.cancel")
        stopped += 1
    return stopped


def feedback_give(*, actor: User, run: Run, rating, comment: str = "") -> Feedback:
    """Rate a succeeded run's output (1–5) with an optional comment; one per person and run (a second one replaces
    the first). Kept as the agent's memory. A failed run produced no output to rate."""
    if not run_policy.can_view_run(actor, run):
        raise PermissionDenied("You cannot see this run.")
    if run.status == RunStatus.FAILED:
        raise ValidationError("This run failed: it has no output to rate.")
    if run.status != RunStatus.SUCCEEDED:
        raise ValidationError("Rate a run once it has an output.")
    try:
        rating = int(rating)
    except (TypeError, ValueError):
        rating = 0
    if not 1 <= rating <= 5:
        raise ValidationError({"rating": "Choose a rating from 1 to 5."})
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise ValidationError({"comment": "Keep the comment under 2,000 characters."})
    with transaction.atomic():
        existing = Feedback.objects.select_for_update().filter(run=run, author=actor).first()
        before = {"rating": existing.rating, "comment": existing.comment} if existing else None
        feedback = existing or Feedback(run=run, agent_id=run.agent_id, author=actor)
        feedback.rating, feedback.comment = rating, comment
        feedback.save()
        audit.record(actor=actor, action="feedback.update" if existing else "feedback.give", target=feedback,
                     workspace=run.agent.workspace, before=before,
                     after={"run": run.pk, "agent": run.agent.name, "rating": rating, "comment": comment})
    return feedback


def feedback_delete(*, actor: User, feedback: Feedback) -> None:
    """Owners of the agent remove an item of its memory."""
    agent = feedback.agent
    if not agent_policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners delete its feedback.")
    with transaction.atomic():
        audit.record(actor=actor, action="feedback.delete", target=agent, workspace=agent.workspace,
                     before={"feedback": feedback.pk, "run": feedback.run_id, "author": feedback.author.username,
                             "rating": feedback.rating, "comment": feedback.comment})
        feedback.delete()


def suggestion_apply(*, actor: User, run: Run, index: int, params: dict | None = None):
    """Apply a built-in agent's suggested action from its output, through the normal services (they check the
    actor's permission and write the audit event). The finding is then marked applied — by whom, when, with the
    outcome — in the same transaction, so a second click cannot rotate a secret or end an assignment twice."""
    if not run_policy.can_view_run(actor, run):
        raise PermissionDenied("You cannot see this run.")
    builtin = builtin_agents.builtin_for(run.agent.blueprint)
    if builtin is None or run.status != RunStatus.SUCCEEDED:
        raise ValidationError("Only a finished run of a built-in agent has actions to apply.")
    with transaction.atomic():
        locked = _locked(run.pk)
        if not 0 <= index < len(locked.findings):
            raise ValidationError("That finding is not in the run's output.")
        finding = locked.findings[index]
        done = finding.get("applied")
        if done:
            raise ValidationError(f"{done['by']} already applied this finding on {done['at'][:16].replace('T', ' ')} "
                                  f"UTC.")
        applied = builtin.apply(actor, locked, finding, dict(params or {}))
        findings = list(locked.findings)
        findings[index] = {**finding, "applied": {"by": actor.username, "at": timezone.now().isoformat(),
                                                  "message": applied.message}}
        Run.objects.filter(pk=locked.pk).update(findings=findings)
    return applied


# --- schedules ---------------------------------------------------------------------------------------------------
def schedule_update(*, actor: User, agent: Agent, period_seconds: int | None = None,
                    paused: bool | None = None) -> Agent:
    """Owners pause, resume or change an agent's period. A change applies from the next run: a run in progress
    keeps going, and the next one is due one (new) period after the last scheduled start."""
    if not agent_policy.can_manage_agent(actor, agent):
        raise PermissionDenied("Only the agent's owners change its schedule.")
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent.pk)
        before = {"period_seconds": agent.schedule_period_seconds, "paused": agent.schedule_paused}
        if period_seconds is not None:
            if not isinstance(period_seconds, int) or not (
                    period_seconds == 0 or MIN_PERIOD_SECONDS <= period_seconds <= MAX_PERIOD_SECONDS):
                raise ValidationError({"period_seconds": f"The period is 0 (on demand only) or between "
                                                         f"{MIN_PERIOD_SECONDS} seconds and 31 days."})
            agent.schedule_period_seconds = period_seconds
        if paused is not None:
            agent.schedule_paused = bool(paused)
        if agent.schedule_period_seconds and not agent.schedule_paused:
            last = (Run.objects.filter(agent=agent, trigger=RunTrigger.SCHEDULE).order_by("-created_at")
                    .values_list("created_at", flat=True).first())
            agent.next_run_at = max(last + timedelta(seconds=agent.schedule_period_seconds), timezone.now()) \
                if last else timezone.now()
        else:
            agent.next_run_at = None
        agent.save(update_fields=["schedule_period_seconds", "schedule_paused", "next_run_at"])
        after = {"period_seconds": agent.schedule_period_seconds, "paused": agent.schedule_paused}
        audit.record(actor=actor, action="agent.schedule", target=agent, workspace=agent.workspace,
                     before=before, after=after)
    return agent


@jobs.register("run_scheduled_agents", "Start the runs of scheduled agents that are due (their blueprint's "
                                       "trigger period), governed like any run.")
def run_scheduled_agents() -> dict:
    """Due = active, scheduled, not paused, ``next_run_at`` passed (or never set). A scheduled run still queued or
    running is not doubled: that turn is skipped. Batches locked with SKIP LOCKED, so two workers never start the
    same agent twice."""
    counts = {"started": 0, "refused": 0, "skipped": 0}
    seen: set[int] = set()
    while True:
        with transaction.atomic():
            now = timezone.now()
            batch = list(Agent.objects.select_for_update(skip_locked=True, of=("self",))
                         .select_related("blueprint", "workspace", "run_as_user")
                         .filter(status=AgentStatus.ACTIVE, schedule_period_seconds__gt=0, schedule_paused=False)
                         .filter(Q(next_run_at__isnull=True) | Q(next_run_at__lte=now)).exclude(pk__in=seen)
                         .order_by("pk")[:JOB_BATCH])
            if not batch:
                return counts
            busy = set(Run.objects.filter(agent__in=batch, trigger=RunTrigger.SCHEDULE,
                                          status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
                       .values_list("agent_id", flat=True))
            for agent in batch:
                seen.add(agent.pk)
                if agent.pk in busy:
                    counts["skipped"] += 1
                elif runnable_problem(agent):
                    counts["skipped"] += 1
                else:
                    run = scheduled_run_start(agent)
                    counts["started" if run.status == RunStatus.QUEUED else "refused"] += 1
                agent.next_run_at = now + timedelta(seconds=agent.schedule_period_seconds)
            Agent.objects.bulk_update(batch, ["next_run_at"])


@jobs.register("expire_runs", "Fail runs past their time limit (and runs no worker picked up within an hour); "
                              "their tokens end.")
def expire_runs() -> dict:
    counts = {"timed_out": 0, "never_started": 0}
    while True:
        with transaction.atomic():
            now = timezone.now()
            batch = list(Run.objects.select_for_update(skip_locked=True, of=("self",)).select_related(
                "agent__workspace").filter(
                Q(status=RunStatus.RUNNING, deadline_at__lt=now)
                | Q(status=RunStatus.QUEUED, created_at__lt=now - QUEUED_TOO_LONG)).order_by("pk")[:JOB_BATCH])
            if not batch:
                return counts
            for run in batch:
                if run.status == RunStatus.RUNNING:
                    counts["timed_out"] += 1
                    _finish(run, RunStatus.FAILED, action="run.timeout",
                            error=f"The run reached its time limit ({run.time_limit_seconds} s) without an output.")
                else:
                    counts["never_started"] += 1
                    _finish(run, RunStatus.FAILED, action="run.timeout",
                            error="No worker picked the run up within an hour.")
