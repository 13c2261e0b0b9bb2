"""``/api/v1/sessions/`` and ``/api/v1/runs/``: the same services and visibility as the pages (R10, R20)."""

from __future__ import annotations

import pytest

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.runs import services as runs
from governance.runs.models import Run, Session
from portal import workspaces
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _open(client, user, agent_id, title=""):
    client.force_login(user)
    return client.post("/api/v1/sessions/", {"agent": agent_id, "title": title}, content_type="application/json")


def test_a_session_and_a_run_started_through_the_api(client, registry_world):
    w = registry_world
    opened = _open(client, w.contributor, w.agent.pk, "From the API")
    assert opened.status_code == 201 and opened.json()["agent_name"] == "matrix-agent"
    session_id = opened.json()["id"]
    started = client.post("/api/v1/runs/", {"session": session_id, "inputs": {}}, content_type="application/json")
    assert started.status_code == 201, started.content
    body = started.json()
    assert body["status"] == "queued" and body["trigger"] == "api" and body["started_by"] == "contributor"
    assert client.get(f"/api/v1/runs/?session={session_id}").json()["count"] == 1
    assert client.get(f"/api/v1/runs/{body['id']}/outputs/").json()["status"] == "queued"
    cancelled = client.post(f"/api/v1/runs/{body['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/v1/runs/{body['id']}/cancel/").status_code == 409
    assert client.get("/api/v1/sessions/").json()["results"][0]["runs"] == 1


def test_r20_a_refused_run_through_the_api_names_the_policy(client, registry_world):
    w = registry_world
    conditional_access.policy_save(actor=None, data={"name": "API freeze", "state": "on", "grant": "block"},
                                   agents=[w.agent])
    session_id = _open(client, w.owner, w.agent.pk).json()["id"]
    body = client.post("/api/v1/runs/", {"session": session_id}, content_type="application/json").json()
    assert body["status"] == "refused" and "API freeze" in body["refused_reason"]
    assert body["policies"][0]["name"] == "API freeze"


def test_bad_inputs_are_a_400_and_record_nothing(client, registry_world):
    w = registry_world
    session_id = _open(client, w.owner, w.agent.pk).json()["id"]
    response = client.post("/api/v1/runs/", {"session": session_id, "inputs": {"Nope": "x"}},
                           content_type="application/json")
    assert response.status_code == 400 and "no input called Nope" in response.json()["errors"][0]
    assert not Run.objects.exists()


def test_r10_a_user_scoped_agent_is_404_for_another_contributor_through_the_api(client, world):
    rival = UserFactory(username="rival")
    workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=rival, role="contributor")
    private = registry.agent_create(actor=world.contributor, workspace=world.alpha, spec=agent_spec(
        make_blueprint("Private", permissions=("User.Read.All",), executor_url="https://executor.invalid/r"),
        "private-agent", scope="user", sponsors=[world.contributor], owners=[world.contributor])).agent
    assert _open(client, rival, private.pk).status_code == 404
    session = runs.session_open(actor=world.contributor, agent=private)
    client.force_login(rival)
    assert client.get(f"/api/v1/sessions/{session.pk}/").status_code == 404
    assert client.post("/api/v1/runs/", {"session": session.pk}, content_type="application/json").status_code == 404
    assert Session.objects.count() == 1 and not Run.objects.exists()


def test_contributors_see_their_own_sessions_and_owners_see_everyones(client, registry_world):
    w = registry_world
    mine = runs.session_open(actor=w.contributor, agent=w.agent)
    theirs = runs.session_open(actor=w.owner_b, agent=w.agent)
    client.force_login(w.contributor)
    assert [s["id"] for s in client.get("/api/v1/sessions/").json()["results"]] == [mine.pk]
    assert client.get(f"/api/v1/sessions/{theirs.pk}/").status_code == 404
    client.force_login(w.owner)
    assert {s["id"] for s in client.get("/api/v1/sessions/").json()["results"]} == {mine.pk, theirs.pk}
    client.force_login(w.other)
    assert client.get("/api/v1/sessions/").json()["count"] == 0
    # an owner sees a contributor's session but cannot run in it: sessions are their opener's
    client.force_login(w.owner)
    assert client.post("/api/v1/runs/", {"session": mine.pk}, content_type="application/json").status_code == 403


def test_runs_are_filtered_by_session_agent_and_status(client, registry_world):
    w = registry_world
    first = runs.session_open(actor=w.owner, agent=w.agent)
    second = runs.session_open(actor=w.owner, agent=w.agent)
    queued = runs.run_start(actor=w.owner, session=first)
    cancelled = runs.run_cancel(actor=w.owner, run=runs.run_start(actor=w.owner, session=second))
    client.force_login(w.owner)

    def ids(query):
        return [r["id"] for r in client.get(f"/api/v1/runs/?{query}").json()["results"]]

    assert ids(f"session={first.pk}") == [queued.pk]
    assert ids("status=cancelled") == [cancelled.pk]
    assert ids(f"agent={w.agent.pk}") == [cancelled.pk, queued.pk]
    assert ids("status=nonsense") == []
    assert client.get("/api/v1/runs/?agent=abc").status_code == 400  # an id that is not a number is refused
