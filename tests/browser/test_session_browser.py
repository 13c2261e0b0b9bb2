"""In Chromium: a contributor opens a session with the Agent Hygiene Agent, runs it, watches the findings arrive
(a real Celery worker executes the run, reading the portal API with the run's own token), and rates the output;
the rating is kept as the agent's memory (R10)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from agents import registry
from agents.models import Blueprint, Credential
from governance.runs import builtin as builtin_agents
from governance.runs.models import Feedback, Run
from tests.browser.helpers import sign_in
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def _forget_pooled_connections(app) -> None:
    """Pooled broker connections keep the transport options they were made with: drop them."""
    from kombu import pools

    pools.reset()
    app._pool, app.amqp._producer_pool = None, None


@contextlib.contextmanager
def _worker(tmp_path: Path):
    """A Celery worker thread on the configured broker. The embedded filesystem broker gets folders of its own for
    the test, so no other worker on this machine (a ``make run``) takes the run's message."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    saved = app.conf.broker_transport_options
    if app.conf.broker_url.startswith("filesystem"):
        folders = {"data_folder_in": tmp_path / "broker", "data_folder_out": tmp_path / "broker",
                   "processed_folder": tmp_path / "processed", "control_folder": tmp_path / "control"}
        for folder in folders.values():
            folder.mkdir(exist_ok=True)
        app.conf.broker_transport_options = {key: str(value) for key, value in folders.items()}
        _forget_pooled_connections(app)
    else:
        app.control.purge()
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30):
            yield
    finally:
        if app.conf.broker_transport_options is not saved:
            app.conf.broker_transport_options = saved
            _forget_pooled_connections(app)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_a_contributor_runs_the_hygiene_agent_sees_its_findings_and_rates_them(live_server, browser,
                                                                                       catalog, tmp_path):
    olga, oscar, cora = (UserFactory(username=n, display_name=d) for n, d in
                         (("olga", "Olga Owner"), ("oscar", "Oscar Owner"), ("cora", "Cora Contributor")))
    workspace = make_workspace("alpha", owners=[olga, oscar], contributors=[cora])
    builtin_agents.install()
    blueprint = Blueprint.objects.filter(name="AgentHygieneAgent").latest("version")
    registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        blueprint, "hygiene", sponsors=[olga, oscar], owners=[olga]))
    # Hygiene problems to find: one sponsor only, and a client secret that expired two days ago.
    lonely = registry.agent_create(actor=olga, workspace=workspace, spec=agent_spec(
        make_blueprint("TicketTriage", permissions=("User.Read.All",)), "ticket-triage", sponsors=[olga],
        owners=[olga])).agent
    Credential.objects.filter(identity__agent=lonely).update(created_at=timezone.now() - timedelta(days=120),
                                                             expires_at=timezone.now() - timedelta(days=2))
    base = live_server.url

    with _worker(tmp_path):
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.on("dialog", lambda dialog: dialog.accept())
        sign_in(page, base, "cora")
        page.get_by_role("link", name="Sessions", exact=True).click()
        page.wait_for_selector("text=No sessions")
        page.get_by_role("link", name="Open a session").first.click()
        page.get_by_label("Agent").select_option(label="hygiene — Agent Hygiene Agent (Alpha)")
        page.get_by_label("Title (optional)").fill("Monday hygiene check")
        page.get_by_role("button", name="Open the session").click()
        page.wait_for_selector("h1:has-text('Monday hygiene check')")
        assert page.get_by_label("Secrets expiring within (days)").input_value() == "30"  # the declared input

        page.get_by_role("button", name="Run", exact=True).click()
        page.wait_for_selector("text=is queued")
        # The status block polls every 2 s; when the worker has finished, the page reloads with the findings.
        page.wait_for_selector("#findings-table tr[data-kind='single_sponsor']", timeout=60_000)
        run = Run.objects.get(started_by=cora)
        assert run.status == "succeeded" and run.trigger == "manual"
        assert "hx-trigger" not in page.locator(f"#run-status-{run.pk}").evaluate("e => e.outerHTML")
        findings = page.locator("#findings-table").inner_text()
        assert "ticket-triage" in findings and "expired" in findings and "one sponsor" in findings
        assert "/api/v1/agent-facts/" in page.locator("#run-reads").inner_text()

        page.get_by_label("4", exact=True).check()
        page.get_by_label("Comment (optional)").fill("Right on the expired secret; the sponsor one is known.")
        page.get_by_role("button", name="Save my rating").click()
        page.wait_for_selector("text=Your rating (4/5) is saved")
        assert "Right on the expired secret" in page.locator("#feedback-list").inner_text()
        page.locator("h1").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "session-hygiene.png"), full_page=True)

    feedback = Feedback.objects.get()
    assert (feedback.run_id, feedback.author, feedback.rating) == (run.pk, cora, 4)
