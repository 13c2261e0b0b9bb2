"""Permission-matrix cases for sessions and runs, appended to ``tests.permission_matrix.CASES``.

A session is its opener's (the contributor here); the owners of its agent — alpha's owners, inherited owners (the
Security Administrator), Global Administrators — see everyone's, but only the opener runs the agent in it (403 for
the others). A run follows its session; a scheduled run is visible to whoever sees its agent. Another workspace's
owner sees none of it (404). Schedules and memory are the agent's owners' (contributors: 403). An executor's outputs
come only with the run's own token: every persona here gets 403 on that POST.
"""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from tests.permission_matrix import LOGIN, Case, expect

SEES_SESSION = expect(LOGIN, 200, 200, 200, 200, 404)
ACTS_ON_RUN = expect(LOGIN, 302, 302, 302, 302, 404)
OWNERS_ONLY = expect(LOGIN, 403, 302, 302, 302, 404)
OPENER_ONLY = expect(LOGIN, 302, 403, 403, 403, 404)
API_SEES_SESSION = expect(403, 200, 200, 200, 200, 404)
API_LIST = expect(403, 200, 200, 200, 200, 200)


def _session(w):
    """The contributor's session with the matrix agent."""
    from governance.runs import services as runs
    from governance.runs.models import Session

    return Session.objects.filter(opened_by=w.contributor, title="Matrix session").first() or runs.session_open(
        actor=w.contributor, agent=w.agent, title="Matrix session")


def _run(w):
    """A queued run in the contributor's session (no worker runs in these tests: it stays queued)."""
    from governance.runs import services as runs

    session = _session(w)
    return session.runs.filter(status="queued").first() or runs.run_start(actor=w.contributor, session=session)


def _finished_run(w):
    """A run with an output (succeeded, one finding with nothing to apply), rated by the contributor."""
    from governance.runs import services as runs
    from governance.runs.models import Feedback, Run

    session = _session(w)
    run = session.runs.filter(status="succeeded").first()
    if run is None:
        run = runs.run_start(actor=w.contributor, session=session)
        Run.objects.filter(pk=run.pk).update(
            status="succeeded", finished_at=timezone.now(), summary="Nothing to report.",
            findings=[{"kind": "note", "level": "low", "detail": "matrix", "action": "review"}])
        run.refresh_from_db()
        runs.feedback_give(actor=w.contributor, run=run, rating=4, comment="matrix")
    return run, Feedback.objects.get(run=run, author=w.contributor)


def _scheduled_run(w):
    from governance.runs import services as runs
    from governance.runs.models import Run

    return Run.objects.filter(agent=w.agent, trigger="schedule").first() or runs.scheduled_run_start(w.agent)


def _run_url(name):
    return lambda w: reverse(name, args=[_run(w).pk])


CASES: list = [
    Case("session-list", "GET", lambda w: reverse("session-list"), expect(LOGIN, 200, 200, 200, 200, 200)),
    Case("session-list", "GET", lambda w: reverse("session-list") + f"?agent={w.agent.pk}&mine=1",
         expect(LOGIN, 200, 200, 200, 200, 200), label="session-list filtered"),
    Case("session-create", "GET", lambda w: reverse("session-create"), expect(LOGIN, 200, 200, 200, 200, 200)),
    Case("session-create", "GET", lambda w: reverse("session-create") + f"?agent={w.agent.pk}", SEES_SESSION,
         label="session-create for an agent"),
    Case("session-create", "POST", lambda w: reverse("session-create"), ACTS_ON_RUN,
         data=lambda w: {"agent": w.agent.pk, "title": "From the matrix"}),
    Case("session-create", "POST", lambda w: reverse("session-create"), expect(LOGIN, 200, 200, 200, 200, 404),
         label="session-create with an agent waiting for approval (not offered: the form's error)",
         data=lambda w: {"agent": w.partner_agent.pk}),
    Case("session-detail", "GET", lambda w: reverse("session-detail", args=[_session(w).pk]), SEES_SESSION),
    Case("run-start", "POST", lambda w: reverse("run-start", args=[_session(w).pk]), OPENER_ONLY),
    Case("run-detail", "GET", _run_url("run-detail"), SEES_SESSION),
    Case("run-detail", "GET", lambda w: reverse("run-detail", args=[_scheduled_run(w).pk]), SEES_SESSION,
         label="run-detail of a scheduled run (whoever sees the agent)"),
    Case("run-status", "GET", _run_url("run-status"), SEES_SESSION),
    Case("run-cancel", "POST", _run_url("run-cancel"), ACTS_ON_RUN),
    Case("run-feedback", "POST", lambda w: reverse("run-feedback", args=[_finished_run(w)[0].pk]), ACTS_ON_RUN,
         data=lambda w: {"rating": "4", "comment": "matrix"}),
    Case("run-apply", "POST", lambda w: reverse("run-apply", args=[_finished_run(w)[0].pk, 0]), ACTS_ON_RUN,
         label="run-apply (refused: not a built-in agent's run, a message)"),
    Case("agent-schedule", "POST", lambda w: reverse("agent-schedule", args=[w.agent.pk]), OWNERS_ONLY,
         data=lambda w: {"every": "1", "unit": "3600"}),
    Case("agent-feedback-delete", "POST",
         lambda w: reverse("agent-feedback-delete", args=[w.agent.pk, _finished_run(w)[1].pk]), OWNERS_ONLY),
    # the API: the same services and visibility
    Case("api-session-list", "GET", lambda w: "/api/v1/sessions/", API_LIST),
    Case("api-session-list", "POST", lambda w: "/api/v1/sessions/", expect(403, 201, 201, 201, 201, 404),
         label="api session open", data=lambda w: {"agent": w.agent.pk, "title": "api"}),
    Case("api-session-detail", "GET", lambda w: f"/api/v1/sessions/{_session(w).pk}/", API_SEES_SESSION),
    Case("api-run-list", "GET", lambda w: "/api/v1/runs/", API_LIST),
    Case("api-run-list", "POST", lambda w: "/api/v1/runs/", expect(403, 201, 403, 403, 403, 404),
         label="api run start (only the session's opener)", data=lambda w: {"session": _session(w).pk}),
    Case("api-run-detail", "GET", lambda w: f"/api/v1/runs/{_run(w).pk}/", API_SEES_SESSION),
    Case("api-run-cancel", "POST", lambda w: f"/api/v1/runs/{_run(w).pk}/cancel/", API_SEES_SESSION),
    Case("api-run-outputs", "GET", lambda w: f"/api/v1/runs/{_run(w).pk}/outputs/", API_SEES_SESSION),
    Case("api-run-outputs", "POST", lambda w: f"/api/v1/runs/{_run(w).pk}/outputs/",
         expect(403, 403, 403, 403, 403, 403), label="api run outputs (only with the run's own token)",
         data=lambda w: {"summary": "forged"}),
    # what the built-in agents read (a person reads the agents visible to them)
    Case("api-agent-facts-list", "GET", lambda w: "/api/v1/agent-facts/", API_LIST),
]
