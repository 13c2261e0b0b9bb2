"""Sessions and runs pages (R10, R13, R20): who sees which session and run, the run form, refusals,
cancel, feedback and memory, schedules, the htmx status fragment, applying a finding, and constant query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from agents import registry
from agents.models import Agent, AgentUserObjectPermission, Blueprint, Credential, Sponsorship
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.runs import builtin as builtin_agents
from governance.runs import services as runs
from governance.runs.models import Feedback, Run, Session
from portal import workspaces
from portal.models import AuditEvent
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db
UNREACHABLE = "http://127.0.0.1:9/run"  # the discard port: an executor that fails at once
INPUTS = [{"Name": "Target", "Description": "What to check.", "Required": True, "Skill": "x"},
          {"Name": "Days", "Description": "How far back.", "DefaultValue": "30", "Required": False}]


# --- helpers ---------------------------------------------------------------------------------------------------------
def _second_contributor(w):
    other = UserFactory(username="contributor2")
    workspaces.membership_add(actor=w.owner, workspace=w.alpha, user=other, role="contributor")
    return other


def _agent(w, name="inputs-agent", *, executor=UNREACHABLE, inputs=None, actor=None, scope="workspace", **extra):
    blueprint = make_blueprint(name.title().replace("-", ""), permissions=("User.Read.All",), executor_url=executor)
    if inputs is not None:
        Blueprint.objects.filter(pk=blueprint.pk).update(inputs=inputs)
        blueprint.refresh_from_db()
    actor = actor or w.owner
    return registry.agent_create(actor=actor, workspace=w.alpha, spec=agent_spec(
        blueprint, name, scope=scope, sponsors=[actor], owners=[actor], **extra)).agent


def _session(w, user=None, agent=None, title=""):
    return runs.session_open(actor=user or w.contributor, agent=agent or w.agent, title=title)


def _failed_run(w, user=None):
    """A run that has an output to rate: its executor cannot be reached, so the worker's part fails it."""
    agent = _agent(w, "rated-agent")
    run = runs.run_start(actor=user or w.contributor, session=_session(w, user, agent), inputs={})
    runs.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    return run


def _rated_run(w, user=None):
    """A run with an output to rate: a failed run (see ``_failed_run``) given an output, as a succeeded run has."""
    run = _failed_run(w, user)
    Run.objects.filter(pk=run.pk).update(status="succeeded", error="", summary="Nothing to report.")
    run.refresh_from_db()
    return run


def _hygiene(w):
    """The Agent Hygiene Agent set up in alpha, and an agent with a single sponsor and an expired secret."""
    blueprint = {b.name: b for b in builtin_agents.install()}["AgentHygieneAgent"]
    hygiene = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "hygiene", sponsors=[w.owner, w.owner_b], owners=[w.owner])).agent
    lonely = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("Lonely", permissions=("User.Read.All",)), "lonely-agent", sponsors=[w.owner],
        owners=[w.owner])).agent
    Credential.objects.filter(identity__agent=lonely).update(created_at=timezone.now() - timedelta(days=100),
                                                             expires_at=timezone.now() - timedelta(days=2))
    return hygiene, lonely


def _builtin_run(w, hygiene, user=None):
    user = user or w.owner
    run = runs.run_start(actor=user, session=_session(w, user, hygiene), inputs={})
    runs.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    return run


def _count(client, url: str) -> int:
    client.get(url)
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


# --- sessions: who sees what (R10) ------------------------------------------------------------------------------------
def test_r10_contributors_see_their_own_sessions_and_owners_see_everyones(client, registry_world):
    w = registry_world
    other = _second_contributor(w)
    mine, theirs = _session(w, title="Mine"), _session(w, other, title="Theirs")

    client.force_login(w.contributor)
    page = client.get(reverse("session-list")).content.decode()
    assert "Mine" in page and "Theirs" not in page
    assert client.get(reverse("session-detail", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("session-detail", args=[mine.pk])).status_code == 200

    client.force_login(w.owner)
    page = client.get(reverse("session-list")).content.decode()
    assert "Mine" in page and "Theirs" in page
    only_mine = client.get(reverse("session-list") + "?mine=1").content.decode()
    assert "Mine" not in only_mine and "No sessions match" in only_mine
    by_agent = client.get(reverse("session-list") + f"?agent={w.agent.pk}").content.decode()
    assert "Theirs" in by_agent
    detail = client.get(reverse("session-detail", args=[theirs.pk])).content.decode()
    assert "Only contributor2, who opened this session, runs the agent in it." in detail  # owners read, not run

    client.force_login(w.other)
    page = client.get(reverse("session-list")).content.decode()
    assert "No sessions" in page and "Open a session" in page
    assert client.get(reverse("session-detail", args=[mine.pk])).status_code == 404


def test_r10_a_user_scoped_agent_of_another_contributor_stays_invisible(client, registry_world):
    w = registry_world
    other = _second_contributor(w)
    private = _agent(w, "private-agent", actor=w.contributor, scope="user")
    session = _session(w, agent=private)

    client.force_login(other)
    assert client.get(reverse("session-create") + f"?agent={private.pk}").status_code == 404
    assert client.post(reverse("session-create"), {"agent": private.pk}).status_code == 404
    assert client.get(reverse("session-detail", args=[session.pk])).status_code == 404
    assert client.post(reverse("run-start", args=[session.pk]), {}).status_code == 404
    assert Session.objects.filter(opened_by=other).count() == 0

    client.force_login(w.contributor)
    page = client.get(reverse("session-create") + f"?agent={private.pk}").content.decode()
    assert f'<option value="{private.pk}" selected>' in page


def test_session_create_offers_only_agents_the_portal_can_run_and_opens_one(client, registry_world):
    w = registry_world
    idle = _agent(w, "no-executor", executor="")
    client.force_login(w.contributor)
    page = client.get(reverse("session-create")).content.decode()
    assert "matrix-agent" in page and "no-executor" not in page
    refused = client.get(reverse("session-create") + f"?agent={idle.pk}").content.decode()
    assert "The portal cannot run this agent" in refused

    response = client.post(reverse("session-create"), {"agent": idle.pk, "title": "x"})
    assert response.status_code == 200 and "Choose one of the agents offered." in response.content.decode()
    response = client.post(reverse("session-create"), {"agent": w.agent.pk, "title": "Morning check"})
    session = Session.objects.get(opened_by=w.contributor)
    assert response.status_code == 302 and response["Location"] == reverse("session-detail", args=[session.pk])
    assert session.title == "Morning check" and AuditEvent.objects.filter(action="session.open").count() == 1


def test_the_agent_page_opens_a_session_or_says_why_it_cannot(client, registry_world):
    w = registry_world
    idle = _agent(w, "no-executor", executor="")
    client.force_login(w.contributor)
    page = client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()
    assert f'href="{reverse("session-create")}?agent={w.agent.pk}"' in page
    page = client.get(reverse("agent-detail", args=[idle.pk])).content.decode()
    assert "disabled" in page and "The portal cannot run this agent" in page


# --- running ---------------------------------------------------------------------------------------------------------
def test_the_run_form_has_the_declared_inputs_and_the_service_enforces_the_required_ones(client, registry_world):
    w = registry_world
    agent = _agent(w, inputs=INPUTS)
    session = _session(w, agent=agent)
    client.force_login(w.contributor)
    page = client.get(reverse("session-detail", args=[session.pk])).content.decode()
    assert 'name="Target"' in page and 'name="Days"' in page and 'value="30"' in page
    assert "(required)" in page and "What to check." in page and "No runs yet" in page

    response = client.post(reverse("run-start", args=[session.pk]), {"Target": "  ", "Days": "30"})
    assert response.status_code == 200
    assert "Fill in Target: " in response.content.decode()
    assert Run.objects.count() == 0

    response = client.post(reverse("run-start", args=[session.pk]), {"Target": "alpha", "Days": "7"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("run-detail", args=[run.pk])
    assert run.status == "queued" and run.inputs == {"Target": "alpha", "Days": "7"}
    assert run.started_by == w.contributor and run.trigger == "manual"
    page = client.get(reverse("session-detail", args=[session.pk])).content.decode()
    assert f'hx-get="{reverse("run-status", args=[run.pk])}?compact=1"' in page


def test_only_the_opener_runs_in_a_session(client, registry_world):
    w = registry_world
    session = _session(w)
    client.force_login(w.owner)
    assert client.post(reverse("run-start", args=[session.pk]), {}).status_code == 403
    assert Run.objects.count() == 0


def test_r20_a_refused_run_shows_the_blocking_policy(client, registry_world):
    w = registry_world
    conditional_access.policy_save(actor=None, data={"name": "Freeze matrix-agent", "state": "on", "grant": "block"},
                                   agents=[w.agent])
    session = _session(w)
    client.force_login(w.contributor)
    response = client.post(reverse("run-start", args=[session.pk]), {}, follow=True)
    run = Run.objects.get()
    assert run.status == "refused"
    page = response.content.decode()
    assert "was refused" in page and "Freeze matrix-agent" in page
    assert 'data-policy="Freeze matrix-agent"' in page and "block" in page
    assert "hx-trigger" not in page  # a refused run has ended: nothing polls


def test_r13_a_delegated_run_says_for_whom(client, world):
    agent = _agent(world, "mine", actor=world.contributor, scope="user")
    run = runs.run_start(actor=world.contributor, session=_session(world, agent=agent), inputs={})
    client.force_login(world.contributor)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "data-delegated-for" in page and "Acting for" in page


def test_cancel_asks_first_and_a_second_cancel_says_the_run_has_ended(client, registry_world):
    w = registry_world
    run = runs.run_start(actor=w.contributor, session=_session(w), inputs={})
    client.force_login(w.contributor)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "data-confirm=\"Cancel run" in page
    assert client.get(reverse("run-cancel", args=[run.pk])).status_code == 405

    response = client.post(reverse("run-cancel", args=[run.pk]), follow=True)
    run.refresh_from_db()
    assert run.status == "cancelled" and run.cancelled_by == w.contributor
    assert "is cancelled" in response.content.decode()
    again = client.post(reverse("run-cancel", args=[run.pk]), follow=True).content.decode()
    assert "already ended" in again and "Cancel run" not in again

    other = _second_contributor(w)
    client.force_login(other)
    assert client.post(reverse("run-cancel", args=[run.pk])).status_code == 404


def test_htmx_fragment_polls_every_two_seconds_while_queued_and_stops_once_finished(client, registry_world):
    w = registry_world
    run = runs.run_start(actor=w.contributor, session=_session(w), inputs={})
    client.force_login(w.contributor)
    url = reverse("run-status", args=[run.pk])
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert f'hx-get="{url}"' in page and 'hx-trigger="every 2s"' in page

    queued = client.get(url, HTTP_HX_REQUEST="true")
    body = queued.content.decode()
    assert queued.status_code == 200 and 'hx-trigger="every 2s"' in body and "<html" not in body
    assert "HX-Refresh" not in queued.headers

    runs.run_execute(run.pk)  # the worker: the executor cannot be reached, the run fails
    finished = client.get(url, HTTP_HX_REQUEST="true")
    body = finished.content.decode()
    assert "hx-trigger" not in body and 'data-status="failed"' in body and "could not be reached" in body
    assert finished["HX-Refresh"] == "true"  # the page reloads once, with the output and the feedback form
    compact = client.get(url + "?compact=1", HTTP_HX_REQUEST="true").content.decode()
    assert "hx-trigger" not in compact and "findings-table" not in compact


# --- feedback and memory -------------------------------------------------------------------------------------------
def test_feedback_is_validated_saved_and_replaced(client, registry_world):
    w = registry_world
    run = _rated_run(w)
    client.force_login(w.contributor)
    url = reverse("run-feedback", args=[run.pk])

    response = client.post(url, {"rating": "9", "comment": "?"})
    assert response.status_code == 200 and "Choose a rating from 1 to 5." in response.content.decode()
    response = client.post(url, {"comment": "no rating"})
    assert response.status_code == 200 and "Choose a rating from 1 to 5." in response.content.decode()
    assert Feedback.objects.count() == 0

    response = client.post(url, {"rating": "4", "comment": "Useful, but slow."}, follow=True)
    page = response.content.decode()
    assert "Your rating (4/5) is saved" in page and "Useful, but slow." in page and 'data-rating="4"' in page
    client.post(url, {"rating": "2", "comment": "On reflection, wrong."})
    feedback = Feedback.objects.get()
    assert (feedback.rating, feedback.comment, feedback.author) == (2, "On reflection, wrong.", w.contributor)

    queued = runs.run_start(actor=w.contributor, session=_session(w), inputs={})
    response = client.post(reverse("run-feedback", args=[queued.pk]), {"rating": "5"})
    assert response.status_code == 200 and "Rate a run once it has an output." in response.content.decode()


def test_memory_lists_feedback_on_the_agent_page_and_only_owners_delete_it(client, registry_world):
    w = registry_world
    run = _rated_run(w)
    feedback = runs.feedback_give(actor=w.contributor, run=run, rating=3, comment="Remember the staging tenant.")
    delete = reverse("agent-feedback-delete", args=[run.agent.pk, feedback.pk])

    client.force_login(w.contributor)
    page = client.get(reverse("agent-detail", args=[run.agent.pk])).content.decode()
    assert "Remember the staging tenant." in page and delete not in page
    assert client.post(delete).status_code == 403

    client.force_login(w.other)
    assert client.post(delete).status_code == 404

    client.force_login(w.owner)  # the agent's owner (and alpha's)
    page = client.get(reverse("agent-detail", args=[run.agent.pk])).content.decode()
    assert delete in page and "data-confirm=\"Delete contributor's rating of run" in page
    response = client.post(delete, follow=True)
    assert "removed from rated-agent" in response.content.decode()
    assert not Feedback.objects.exists() and AuditEvent.objects.filter(action="feedback.delete").count() == 1


# --- schedules -----------------------------------------------------------------------------------------------------
def test_owners_pause_resume_and_set_the_period_and_bad_periods_are_refused(client, registry_world):
    w = registry_world
    Agent.objects.filter(pk=w.agent.pk).update(schedule_period_seconds=3600)
    url = reverse("agent-schedule", args=[w.agent.pk])

    client.force_login(w.contributor)
    page = client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()
    assert "Every hour" in page and "Pause the schedule" not in page
    assert client.post(url, {"paused": "1"}).status_code == 403

    client.force_login(w.owner)
    assert "Pause the schedule" in client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()
    response = client.post(url, {"paused": "1"})
    assert response.status_code == 302 and response["Location"].endswith("#schedule")
    w.agent.refresh_from_db()
    assert w.agent.schedule_paused and w.agent.next_run_at is None
    page = client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()
    assert "paused" in page and "Resume the schedule" in page

    client.post(url, {"paused": "0"})
    client.post(url, {"every": "2", "unit": "86400"})
    w.agent.refresh_from_db()
    assert not w.agent.schedule_paused and w.agent.schedule_period_seconds == 2 * 86400 and w.agent.next_run_at
    assert "Every 2 days" in client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()

    page = client.post(url, {"every": "32", "unit": "86400"}, follow=True).content.decode()
    assert "between 60 seconds and 31 days" in page
    page = client.post(url, {"every": "-1", "unit": "60"}, follow=True).content.decode()
    assert "0 (on demand only) or more" in page
    w.agent.refresh_from_db()
    assert w.agent.schedule_period_seconds == 2 * 86400

    client.post(url, {"every": "0", "unit": "3600"})
    w.agent.refresh_from_db()
    assert w.agent.schedule_period_seconds == 0
    assert "On demand only" in client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()


# --- built-in agents: findings, applying them, the dashboard ----------------------------------------------------------
def test_a_hygiene_finding_is_applied_from_the_run_page(client, registry_world):
    w = registry_world
    hygiene, lonely = _hygiene(w)
    run = _builtin_run(w, hygiene)
    kinds = {f["kind"]: i for i, f in enumerate(run.findings) if f["agent"] == "lonely-agent"}
    assert {"single_sponsor", "credential_expired"} <= set(kinds)

    client.force_login(w.owner)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    sponsor_url = reverse("run-apply", args=[run.pk, kinds["single_sponsor"]])
    assert sponsor_url in page and 'name="user"' in page and "Add a sponsor" in page and "reads" in page.lower()
    assert "/api/v1/agent-facts/" in page  # what the run read

    response = client.post(sponsor_url, {"user": w.owner_b.pk}, follow=True)
    # R30 (docs/sponsorship.md): owner_b is asked; the agent counts them once they accept
    assert "owner_b is asked to sponsor lonely-agent; they sponsor it once they accept." in \
        response.content.decode()
    assert Sponsorship.objects.get(agent=lonely, user=w.owner_b).state == "pending"
    assert AgentUserObjectPermission.objects.filter(content_object=lonely, user=w.owner_b,
                                                    permission__codename="sponsor_agent").exists()
    page = client.post(sponsor_url, {}, follow=True).content.decode()
    assert "Choose the person who will sponsor the agent." in page
    again = client.post(sponsor_url, {"user": w.contributor.pk}, follow=True).content.decode()
    assert "owner already applied this finding" in again and "Applied by owner" in again
    assert not AgentUserObjectPermission.objects.filter(content_object=lonely, user=w.contributor).exists()

    rotate = client.post(reverse("run-apply", args=[run.pk, kinds["credential_expired"]]))
    assert rotate.status_code == 302  # Post/Redirect/Get: the secret waits in the session for one page
    rotate = client.get(rotate["Location"])
    body = rotate.content.decode()
    assert rotate.status_code == 200 and "no-store" in rotate["Cache-Control"]
    assert 'id="client-secret"' in body and "Copy the secret now" in body
    assert reverse("run-detail", args=[run.pk]) in body  # a way back to the run
    secret = body.split('id="client-secret" class="user-select-all">')[1].split("<")[0]
    assert secret and secret not in client.get(reverse("run-detail", args=[run.pk])).content.decode()
    credentials = Credential.objects.filter(identity__agent=lonely).count()
    twice = client.post(reverse("run-apply", args=[run.pk, kinds["credential_expired"]]), follow=True)
    assert "already applied this finding" in twice.content.decode()
    assert Credential.objects.filter(identity__agent=lonely).count() == credentials  # no second rotation


def test_a_suggested_policy_is_shown_and_created_in_report_only_from_the_run_page(client, registry_world):
    w = registry_world
    blueprint = {b.name: b for b in builtin_agents.install()}["ConditionalAccessOptimizationAgent"]
    optimizer = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "ca-optimizer", sponsors=[w.owner, w.owner_b], owners=[w.owner])).agent
    run = _builtin_run(w, optimizer)
    index, finding = next((i, f) for i, f in enumerate(run.findings) if f["action"] == "create_policy")
    client.force_login(w.owner)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert finding["suggested_policy"]["name"] in page and "Create the suggested report-only policy" in page
    response = client.post(reverse("run-apply", args=[run.pk, index]), follow=True)
    assert "Created the report-only policy" in response.content.decode()
    policy = ConditionalAccessPolicy.objects.get(name=finding["suggested_policy"]["name"])
    assert policy.state == "report_only"


def test_a_contributor_cannot_apply_what_they_may_not_do(client, registry_world):
    w = registry_world
    hygiene, _lonely = _hygiene(w)
    run = _builtin_run(w, hygiene, user=w.contributor)
    index = next(i for i, f in enumerate(run.findings) if f["kind"] == "credential_expired")
    client.force_login(w.contributor)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    assert "data-owners-apply" in page and reverse("run-apply", args=[run.pk, index]) not in page
    assert client.post(reverse("run-apply", args=[run.pk, index])).status_code == 403
    out_of_range = client.post(reverse("run-apply", args=[run.pk, 999]), follow=True).content.decode()
    assert "That finding is not in the run&#x27;s output." in out_of_range


def test_the_dashboard_shows_the_latest_findings_of_each_built_in_agent(client, registry_world):
    w = registry_world
    client.force_login(w.contributor)
    page = client.get(reverse("dashboard")).content.decode()
    assert "Findings from built-in agents" in page and "No built-in agents you can see" in page

    hygiene, _lonely = _hygiene(w)
    page = client.get(reverse("dashboard")).content.decode()
    assert 'data-builtin-agent="hygiene"' in page and "No run yet." in page

    run = _builtin_run(w, hygiene)  # the owner's session: the contributor does not see it
    assert "No run yet." in client.get(reverse("dashboard")).content.decode()
    client.force_login(w.owner)
    page = client.get(reverse("dashboard")).content.decode()
    assert reverse("run-detail", args=[run.pk]) in page and "lonely-agent" in page
    assert page.index('data-finding-level="medium"') < page.index('data-finding-level="low"')


# --- constant query counts ------------------------------------------------------------------------------------------
def test_the_session_list_and_a_session_run_a_constant_number_of_queries(client, registry_world):
    w = registry_world
    client.force_login(w.owner)

    def add(n):
        for i in range(n):
            session = _session(w, title=f"s{Session.objects.count()}")
            runs.run_start(actor=w.contributor, session=session, inputs={})
            if i % 2:
                runs.run_start(actor=w.contributor, session=session, inputs={})

    add(3)
    small = _count(client, reverse("session-list"))
    add(17)
    assert _count(client, reverse("session-list")) == small

    session = _session(w, title="busy")
    def finished():  # an output to rate: the unreachable executor fails it, then it is given one
        run = runs.run_execute(runs.run_start(actor=w.contributor, session=session, inputs={}).pk)
        Run.objects.filter(pk=run.pk).update(status="succeeded", error="")
        run.refresh_from_db()
        return run

    first = finished()
    runs.feedback_give(actor=w.contributor, run=first, rating=3)
    small = _count(client, reverse("session-detail", args=[session.pk]))
    for _ in range(19):
        run = finished()
        runs.feedback_give(actor=w.contributor, run=run, rating=4, comment="ok")
        runs.feedback_give(actor=w.owner, run=run, rating=2)
    assert _count(client, reverse("session-detail", args=[session.pk])) == small


def test_a_run_page_and_the_agent_page_run_a_constant_number_of_queries(client, registry_world):
    w = registry_world
    hygiene, _lonely = _hygiene(w)
    run = _builtin_run(w, hygiene)
    client.force_login(w.owner)
    sponsor = next(f for f in run.findings if f["action"] == "add_sponsor")
    others = [f for f in run.findings if f["action"] != "add_sponsor"]
    Run.objects.filter(pk=run.pk).update(findings=others[:2] + [sponsor])  # 3 findings, one needs the people
    runs.feedback_give(actor=w.owner, run=run, rating=4)
    small = _count(client, reverse("run-detail", args=[run.pk]))
    agent_small = _count(client, reverse("agent-detail", args=[hygiene.pk]))

    many = [{**others[0], "detail": f"finding {i}"} for i in range(15)] + [sponsor] * 5
    Run.objects.filter(pk=run.pk).update(findings=many)  # 20 findings
    for i in range(5):  # more people to offer as sponsors
        workspaces.membership_add(actor=w.owner, workspace=w.alpha, user=UserFactory(username=f"person{i}"),
                                  role="contributor")
    for person in (w.owner_b, w.inherited, w.ga):  # more feedback on the run, and in the agent's memory
        runs.feedback_give(actor=person, run=run, rating=3, comment="noted")
    for _ in range(8):  # more runs than the agent page lists
        _builtin_run(w, hygiene)
    assert _count(client, reverse("run-detail", args=[run.pk])) == small
    assert _count(client, reverse("agent-detail", args=[hygiene.pk])) == agent_small


def test_the_dashboard_runs_a_constant_number_of_queries(client, registry_world):
    w = registry_world
    hygiene, _lonely = _hygiene(w)
    _builtin_run(w, hygiene)
    client.force_login(w.owner)
    small = _count(client, reverse("dashboard"))
    blueprint = hygiene.blueprint
    for i in range(4):
        extra = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
            blueprint, f"hygiene-{i}", sponsors=[w.owner, w.owner_b], owners=[w.owner])).agent
        _builtin_run(w, extra)
    for i in range(15):
        registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
            make_blueprint(f"Solo{i}", permissions=("User.Read.All",)), f"solo-{i}", sponsors=[w.owner],
            owners=[w.owner]))
    _builtin_run(w, hygiene)
    assert _count(client, reverse("dashboard")) == small
