"""Executing runs: external executors on loopback, time-outs, the callback's guards, time limits,
cancelling, and schedules from the blueprint's triggers (the job, and beat with a real worker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents import registry
from agents.models import Agent, Blueprint
from governance.runs import services as runs
from governance.runs.models import Run
from governance.signin import tokens
from governance.signin.models import AccessToken, SignIn
from portal import jobs
from portal.models import AuditEvent
from tests.factories import agent_spec, make_blueprint

REPO = Path(__file__).resolve().parents[3]


class Executor:
    """A small external executor on loopback: records each run request and answers as told."""

    def __init__(self, *, delay: float = 0.0, status: int = 202, callback=None):
        self.requests: list[dict] = []
        self.delay, self.status, self.callback = delay, status, callback
        self.threads: list[threading.Thread] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append(body)
                time.sleep(owner.delay)
                try:
                    self.send_response(owner.status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"accepted": true}')
                except BrokenPipeError:  # the portal gave up waiting (the time-out test)
                    return
                if owner.callback is not None:
                    worker = threading.Thread(target=owner.callback, args=(body,), daemon=True)
                    owner.threads.append(worker)
                    worker.start()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/run"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _external_agent(w, url: str, name: str = "external-agent", permissions=("User.Read.All",)) -> Agent:
    blueprint = make_blueprint(f"External{name.title().replace('-', '')}", permissions=permissions,
                               executor_url=url)
    blueprint.inputs = [{"Name": "Keywords", "Required": True, "Skill": "S"}]
    blueprint.save(update_fields=["inputs"])
    return registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, name, sponsors=[w.owner], owners=[w.owner_b])).agent


def _wait(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


@pytest.mark.django_db(transaction=True)
def test_an_external_executor_on_loopback_receives_the_run_and_posts_its_outputs_back(world, live_server, settings):
    settings.PORTAL_BASE_URL = live_server.url
    seen: dict = {}

    def callback(request):
        headers = {"Authorization": f"Bearer {request['access_token']}"}
        seen["read"] = httpx.get(f"{request['api_url']}agent-facts/", headers=headers, timeout=10).status_code
        seen["post"] = httpx.post(request["callback_url"], headers=headers, timeout=10, json={
            "summary": "Two stale devices.", "findings": [{"kind": "stale_device", "level": "low",
                                                            "detail": "laptop-17 idle for 90 days"}]}).status_code
        seen["again"] = httpx.post(request["callback_url"], headers=headers, timeout=10,
                                   json={"summary": "x"}).status_code

    executor = Executor(callback=callback)
    try:
        agent = _external_agent(world, executor.url)
        session = runs.session_open(actor=world.contributor, agent=agent)
        run = runs.run_start(actor=world.contributor, session=session, inputs={"Keywords": "laptop"})
        assert run.status == "queued"
        runs.run_execute(run.pk)  # the worker's part, here in the test's thread
        request = executor.requests[0]
        assert request["run_id"] == run.pk and request["inputs"] == {"Keywords": "laptop"}
        assert request["callback_url"] == f"{live_server.url}/api/v1/runs/{run.pk}/outputs/"
        assert request["scopes"] == ["User.Read.All"]
        claims = tokens.claims_of(request["access_token"])  # a JWT the portal signed (docs/oauth.md)
        assert claims is not None and claims["scope"] == "User.Read.All" and claims["agent_id"] == agent.pk
        finished = _wait(lambda: Run.objects.filter(pk=run.pk, status="succeeded").first())
        for thread in executor.threads:
            thread.join(10)
    finally:
        executor.close()
    assert seen == {"read": 200, "post": 200, "again": 401}  # the token ended with the run
    assert finished.summary == "Two stale devices." and finished.findings[0]["kind"] == "stale_device"
    token = AccessToken.objects.get(run=finished)
    assert token.revoked_at is not None and token.grant_type == "run"
    assert SignIn.objects.filter(token=token, outcome="success", grant_type="run").count() == 1
    assert list(AuditEvent.objects.filter(target_id=str(run.pk), action__startswith="run.")
                .order_by("id").values_list("action", flat=True)) == ["run.start", "run.begin", "run.outputs"]
    assert request["access_token"] not in json.dumps(list(AuditEvent.objects.values("before", "after")))


@pytest.mark.django_db
def test_an_executor_that_never_answers_times_out_and_the_run_says_so(world, settings):
    settings.RUN_EXECUTOR_TIMEOUT_SECONDS = 0.5
    executor = Executor(delay=3)
    try:
        agent = _external_agent(world, executor.url)
        run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                             inputs={"Keywords": "x"})
        started = time.monotonic()
        runs.run_execute(run.pk)
        took = time.monotonic() - started
    finally:
        executor.close()
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "The executor did not answer within 0.5 s."
    assert took < 2.5 and run.finished_at is not None
    assert AccessToken.objects.get(run=run).revoked_at is not None


@pytest.mark.django_db
def test_an_executor_that_refuses_fails_the_run_with_its_status(world):
    executor = Executor(status=503)
    try:
        agent = _external_agent(world, executor.url)
        run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                             inputs={"Keywords": "x"})
        runs.run_execute(run.pk)
    finally:
        executor.close()
    run.refresh_from_db()
    assert run.status == "failed" and run.error == "The executor refused the run: HTTP 503."


@pytest.mark.django_db
def test_an_unreachable_executor_fails_the_run(world):
    agent = _external_agent(world, "http://127.0.0.1:9/run")  # the discard port: nothing listens
    run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                         inputs={"Keywords": "x"})
    runs.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("The executor could not be reached")


def _running(world, url="https://executor.invalid/run") -> tuple[Run, str]:
    """A run that has begun (status running, token issued) without contacting any executor."""
    agent = _external_agent(world, url)
    run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                         inputs={"Keywords": "x"})
    begun, token = runs._begin(run.pk)
    assert begun.status == "running" and token
    return begun, token


@pytest.mark.django_db
def test_outputs_are_accepted_only_with_the_runs_own_token_and_only_while_it_runs(world, client):
    run, token = _running(world)
    second_agent = _external_agent(world, "https://executor.invalid/run", name="second-agent")
    second = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=second_agent),
                            inputs={"Keywords": "x"})
    _second, second_token = runs._begin(second.pk)
    url = f"/api/v1/runs/{run.pk}/outputs/"
    body = json.dumps({"summary": "done", "findings": [{"kind": "k"}]})

    assert client.post(url, body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {second_token}").status_code == 403
    assert client.post(url, body, content_type="application/json").status_code == 401  # no token at all
    client.force_login(world.owner)
    assert client.post(url, body, content_type="application/json").status_code == 403  # a person cannot
    client.logout()
    bad = client.post(url, json.dumps({"status": "maybe"}), content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bad.status_code == 400
    runs.run_cancel(actor=world.owner, run=run)
    late = client.post(url, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert late.status_code == 401  # cancelling ended the token too
    run.refresh_from_db()
    assert run.status == "cancelled" and run.summary == "" and run.cancelled_by == world.owner
    with pytest.raises(runs.RunEnded):
        runs.run_outputs_receive(token=AccessToken.objects.get(run=run), run=run, data={"summary": "late"})


@pytest.mark.django_db
def test_cancel_is_for_the_starter_and_owners_and_a_late_worker_changes_nothing(world):
    agent = _external_agent(world, "https://executor.invalid/run")
    session = runs.session_open(actor=world.contributor, agent=agent)
    run = runs.run_start(actor=world.contributor, session=session, inputs={"Keywords": "x"})
    with pytest.raises(PermissionDenied):
        runs.run_cancel(actor=world.other, run=run)
    runs.run_cancel(actor=world.contributor, run=run)
    assert runs.run_execute(run.pk).status == "cancelled"  # the queued message arrives late: nothing happens
    with pytest.raises(ValidationError):
        runs.run_cancel(actor=world.owner, run=run)
    assert AuditEvent.objects.filter(action="run.cancel").count() == 1


@pytest.mark.django_db
def test_a_run_past_its_deadline_is_failed_by_expire_runs_and_its_token_ends(world, client):
    run, token = _running(world)
    stuck = Run.objects.create(agent=run.agent, status="queued", inputs={},
                               created_at=timezone.now() - timedelta(hours=2))
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    result = jobs.job_execute("expire_runs")
    assert result.status == "succeeded" and result.counts == {"timed_out": 1, "never_started": 1}
    run.refresh_from_db()
    stuck.refresh_from_db()
    assert run.status == "failed" and "time limit (300 s)" in run.error
    assert stuck.status == "failed" and "No worker" in stuck.error
    assert tokens.live_token(token) is None
    assert jobs.job_execute("expire_runs").counts == {"timed_out": 0, "never_started": 0}  # idempotent


@pytest.mark.django_db
def test_r20_a_policy_set_while_the_run_waits_refuses_it_when_the_worker_picks_it_up(world):
    from governance.conditional_access import services as conditional_access

    agent = _external_agent(world, "https://executor.invalid/run")
    run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                         inputs={"Keywords": "x"})
    conditional_access.policy_save(actor=None, data={"name": "Stop it", "state": "on", "grant": "block"},
                                   agents=[agent])
    runs.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == "refused" and "Stop it" in run.refused_reason
    assert not AccessToken.objects.filter(run=run).exists()
    assert SignIn.objects.filter(agent=agent, outcome="blocked", grant_type="run").count() == 1


# --- schedules ---------------------------------------------------------------------------------------------------
def _scheduled(world, period=3600, name="scheduled-agent") -> Agent:
    blueprint = make_blueprint(f"Sched{name.title().replace('-', '')}", permissions=("User.Read.All",),
                               executor_url="https://executor.invalid/run", period=period)
    return registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, name, sponsors=[world.owner], owners=[world.owner_b])).agent


@pytest.mark.django_db
def test_triggers_become_the_schedule_and_the_job_starts_due_runs_once(world):
    agent = _scheduled(world, period=3600)
    on_demand = _scheduled(world, period=0, name="on-demand-agent")
    assert agent.schedule_period_seconds == 3600 and on_demand.schedule_period_seconds == 0
    first = jobs.job_execute("run_scheduled_agents")
    assert first.counts == {"started": 1, "refused": 0, "skipped": 0}
    run = Run.objects.get(agent=agent)
    assert run.trigger == "schedule" and run.started_by is None and run.status == "queued"
    agent.refresh_from_db()
    assert 3590 <= (agent.next_run_at - timezone.now()).total_seconds() <= 3600
    assert jobs.job_execute("run_scheduled_agents").counts == {"started": 0, "refused": 0, "skipped": 0}
    Agent.objects.filter(pk=agent.pk).update(next_run_at=timezone.now())
    # still queued: the turn is skipped rather than doubled
    assert jobs.job_execute("run_scheduled_agents").counts == {"started": 0, "refused": 0, "skipped": 1}
    assert not Run.objects.filter(agent=on_demand).exists()


@pytest.mark.django_db
def test_owners_pause_resume_and_change_the_period_from_the_next_run(world):
    agent = _scheduled(world, period=3600)
    with pytest.raises(PermissionDenied):
        runs.schedule_update(actor=world.contributor, agent=agent, paused=True)
    for bad in (30, -1, 40 * 24 * 3600):
        with pytest.raises(ValidationError):
            runs.schedule_update(actor=world.owner, agent=agent, period_seconds=bad)
    runs.schedule_update(actor=world.owner, agent=agent, paused=True)
    assert jobs.job_execute("run_scheduled_agents").counts["started"] == 0
    agent = runs.schedule_update(actor=world.owner, agent=agent, paused=False)
    assert jobs.job_execute("run_scheduled_agents").counts["started"] == 1
    run = Run.objects.get(agent=agent)
    begun, _token = runs._begin(run.pk)  # a run in progress…
    agent = runs.schedule_update(actor=world.owner, agent=agent, period_seconds=600)
    begun.refresh_from_db()
    assert begun.status == "running" and begun.deadline_at == begun.started_at + timedelta(seconds=300)
    assert abs((agent.next_run_at - (run.created_at + timedelta(seconds=600))).total_seconds()) < 1
    assert AuditEvent.objects.filter(action="agent.schedule").count() == 3


def _database_url() -> str:
    from urllib.parse import quote

    from django.db import connection

    db = connection.settings_dict
    user = quote(db.get("USER") or "postgres", safe="")
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_agent_runs_on_its_period_through_beat_and_a_real_worker(world, postgres, redis_url, tmp_path):
    """Celery beat (the real schedule from portal.schedules) and a worker process over Redis run a built-in agent
    every 3 seconds; each run gets its token, reads the API and stores its findings."""
    from governance.runs import builtin as builtin_agents
    from portal.celery import app as celery_app

    builtin_agents.install()
    blueprint = Blueprint.objects.filter(name="AgentHygieneAgent").latest("version")
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "hygiene", sponsors=[world.owner], owners=[world.owner_b])).agent
    assert agent.schedule_period_seconds == 3600  # from the manifest's trigger
    Agent.objects.filter(pk=agent.pk).update(schedule_period_seconds=3)  # test data: a short period
    celery_app.control.purge()
    env = {**os.environ, "DATABASE_URL": _database_url(), "REDIS_URL": redis_url, "AGENT_SCHEDULER_SECONDS": "1",
           "DJANGO_SETTINGS_MODULE": "portal.settings"}
    celery = Path(sys.executable).with_name("celery")
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([str(celery), "-A", "portal", "worker", "-B", "--pool=solo", "--loglevel=INFO",
                                   "-s", str(tmp_path / "beat-schedule"), "--without-heartbeat",
                                   "--without-mingle", "--without-gossip"],
                                  cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            def two_done():
                assert worker.poll() is None, log.read_text()
                done = list(Run.objects.filter(agent=agent, status="succeeded").order_by("created_at"))
                return done if len(done) >= 2 else None

            done = _wait(two_done, 90)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
    first, second = done[:2]
    assert all(r.trigger == "schedule" and r.started_by is None for r in done)
    assert (second.created_at - first.created_at).total_seconds() >= 2.9  # its period, not the scheduler's tick
    assert first.reads and all(path.startswith("/api/v1/") for path in first.reads)
    assert SignIn.objects.filter(agent=agent, grant_type="run", outcome="success").count() >= 2
    assert any(f["kind"] == "single_sponsor" for f in first.findings), first.findings


@pytest.mark.django_db
def test_r21_a_runs_token_is_seen_by_the_risk_job_like_any_other(world):
    """A run's token is a sign-in: a scope a run holds for the first time raises a new-scope detection."""
    from governance.access import services as access_packages
    from governance.access.choices import ApproverKind, DurationKind
    from governance.risk.models import RiskDetection
    from portal.models import Permission

    agent = _external_agent(world, "https://executor.invalid/run")

    def run_once():
        run = runs.run_start(actor=world.owner, session=runs.session_open(actor=world.owner, agent=agent),
                             inputs={"Keywords": "x"})
        return runs._begin(run.pk)[0]

    assert run_once().scopes == ["User.Read.All"]
    assert jobs.job_execute("evaluate_risk").status == "succeeded"
    assert not RiskDetection.objects.filter(agent=agent).exists()  # the first sign-in sets the baseline
    package = access_packages.package_save(
        actor=world.owner, workspace=world.alpha, name="Incidents",
        permissions=Permission.objects.filter(kind="application", name="SecurityIncident.Read.All"),
        policy={"approver_kind": ApproverKind.NONE, "duration_kind": DurationKind.DAYS, "duration_value": 10})
    access_packages.assignment_request(actor=world.owner, package=package, agent=agent, justification="triage")
    assert run_once().scopes == ["SecurityIncident.Read.All", "User.Read.All"]
    assert jobs.job_execute("evaluate_risk").status == "succeeded"
    detection = RiskDetection.objects.get(agent=agent)
    assert (detection.kind, detection.key) == ("new_scope", "SecurityIncident.Read.All")
