"""Blast radius (docs/blast-radius.md): before an agent is disabled or retired, a credential revoked or an assignment
ended, the confirmation page and the API show exactly what stops — and then exactly that stops."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents.choices import AgentStatus
from agents.models import Agent, Credential
from governance.access import services as access_packages
from governance.impact import previews
from governance.runs.choices import RunStatus, RunTrigger
from governance.runs.models import Run, Session
from governance.signin.models import AccessToken, ResourceServer, SignIn
from portal.models import Notification, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

ONE, TWO, OLD = "https://one.example/api", "https://two.example/api", "https://old.example/api"


def _seed(agent, *, starter, now=None):
    """Live tokens for two resources (plus a revoked and an expired one), a scheduled queued run, a running run in
    an open session, sign-ins in the last 7 days and one older."""
    now = now or timezone.now()
    later = now + timedelta(minutes=30)
    live = [AccessToken.objects.create(token_hash=f"{agent.pk}-{n}", agent=agent, client_id="c", expires_at=later,
                                       audience=audience, scopes=["User.Read.All"])
            for n, audience in enumerate((ONE, ONE, TWO))]
    AccessToken.objects.create(token_hash=f"{agent.pk}-revoked", agent=agent, client_id="c", expires_at=later,
                               audience=ONE, revoked_at=now)
    AccessToken.objects.create(token_hash=f"{agent.pk}-expired", agent=agent, client_id="c",
                               expires_at=now - timedelta(minutes=1), audience=TWO)
    scheduled = Run.objects.create(agent=agent, status=RunStatus.QUEUED, trigger=RunTrigger.SCHEDULE)
    session = Session.objects.create(agent=agent, opened_by=starter, title="Triage")
    running = Run.objects.create(agent=agent, session=session, started_by=starter, status=RunStatus.RUNNING,
                                 started_at=now, deadline_at=later)
    Run.objects.create(agent=agent, session=session, started_by=starter, status=RunStatus.SUCCEEDED)
    Session.objects.create(agent=agent, opened_by=starter, title="Finished")  # no run in progress: not listed
    for days, resource in ((1, ONE), (2, TWO), (12, OLD)):
        SignIn.objects.create(agent=agent, at=now - timedelta(days=days), outcome="success", resource=resource,
                              granted_scopes=["User.Read.All"])
    return live, [scheduled, running], session


@pytest.fixture
def seeded(registry_world):
    w = registry_world
    ResourceServer.objects.create(name="Ticketing", client_id="rs-one", secret_hash="h1", identifier=ONE)
    w.tokens, w.runs, w.session = _seed(w.agent, starter=w.contributor)
    bystander = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "bystander", sponsors=[w.owner], owners=[w.owner])).agent
    w.bystander_tokens, w.bystander_runs, _ = _seed(bystander, starter=w.owner)
    return w


def test_r29_the_disable_preview_lists_exactly_the_tokens_runs_and_sessions_that_then_stop(client, seeded):
    w = seeded
    client.force_login(w.owner)
    body = client.get(f"/api/v1/agents/{w.agent.pk}/preview/?action=disable").json()
    assert body["tokens"] == 3 and sorted(body["token_ids"]) == sorted(t.pk for t in w.tokens)
    assert body["token_resources"] == [{"resource": ONE, "tokens": 2}, {"resource": TWO, "tokens": 1}]
    assert sorted(run["id"] for run in body["runs"]) == sorted(run.pk for run in w.runs)
    assert [session["id"] for session in body["sessions"]] == [w.session.pk]
    assert [(r["resource"], r["name"]) for r in body["resources"]] == [(ONE, "Ticketing"), (TWO, "")]  # not OLD
    assert body["scopes"] == ["User.Read.All"]
    people = {p["username"]: p["roles"] for p in body["people"]}
    assert people["owner"] == ["sponsor"] and people["owner_b"] == ["owner"]
    assert set(people["contributor"]) == {"started a run that stops", "has a session in progress"}
    assert body["agents_without_credential"] == []  # disabling removes no credential

    response = client.post(f"/agents/{w.agent.pk}/disable/", secure=True)
    assert response.status_code == 302
    revoked = set(AccessToken.objects.filter(agent=w.agent, revoked_reason__startswith="agent")
                  .values_list("pk", flat=True))
    assert revoked == set(body["token_ids"])
    cancelled = set(Run.objects.filter(agent=w.agent, status=RunStatus.CANCELLED).values_list("pk", flat=True))
    assert cancelled == {run["id"] for run in body["runs"]}
    assert not Run.objects.filter(session=w.session, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()
    told = set(Notification.objects.filter(subject="matrix-agent was disabled")
               .values_list("recipient__username", flat=True))
    assert told == set(people)
    # the other agent is untouched
    assert not AccessToken.objects.filter(pk__in=[t.pk for t in w.bystander_tokens], revoked_at__isnull=False) \
        .exists()
    assert Run.objects.filter(pk__in=[r.pk for r in w.bystander_runs], status__in=["queued", "running"]).count() == 2


def test_r29_the_retire_page_shows_what_stops_and_retiring_stops_exactly_that(client, seeded):
    w = seeded
    client.force_login(w.owner)
    page = client.get(f"/agents/{w.agent.pk}/retire/", secure=True).content.decode()
    assert 'id="blast-radius"' in page and "What stops" in page
    assert '<dd class="col-sm-8" data-radius="tokens"><strong>3</strong>' in page
    assert f'data-run="{w.runs[0].pk}"' in page and f'data-run="{w.runs[1].pk}"' in page
    assert "Ticketing" in page and OLD not in page
    radius = previews.agents_preview([Agent.objects.get(pk=w.agent.pk)], "retire")
    assert [a.name for a in radius.agents_without_credential] == ["matrix-agent"]
    client.post(f"/agents/{w.agent.pk}/retire/", secure=True)
    assert Agent.objects.get(pk=w.agent.pk).status == AgentStatus.RETIRED
    assert set(AccessToken.objects.filter(agent=w.agent, revoked_reason__startswith="agent")
               .values_list("pk", flat=True)) == {t.pk for t in radius.tokens}
    assert set(Run.objects.filter(agent=w.agent, status=RunStatus.CANCELLED).values_list("pk", flat=True)) == \
        {r.pk for r in radius.runs}
    assert Notification.objects.filter(subject="matrix-agent was retired").count() == len(radius.people)


def test_r29_the_disable_confirmation_page_shows_what_stops_and_changes_nothing(client, seeded):
    w = seeded
    client.force_login(w.owner)
    response = client.get(f"/agents/{w.agent.pk}/disable/", secure=True)
    page = response.content.decode()
    assert response.status_code == 200 and "Disable matrix-agent?" in page and 'id="blast-radius"' in page
    assert "Triage" in page and "Contributor" in page
    assert Agent.objects.get(pk=w.agent.pk).status == AgentStatus.ACTIVE
    assert AccessToken.objects.filter(agent=w.agent, revoked_at__isnull=True, expires_at__gt=timezone.now()) \
        .count() == 3


def _fleet(world, n: int, prefix: str):
    blueprint = make_blueprint(f"Fleet{prefix}", permissions=("User.Read.All",))
    specs = [agent_spec(blueprint, f"{prefix}-{k}", sponsors=[world.owner], owners=[world.owner_b])
             for k in range(n)]
    registry.agents_provision(actor=world.owner, workspace=world.alpha, specs=specs)
    agents = list(Agent.objects.filter(name__startswith=f"{prefix}-").order_by("pk"))
    starter = UserFactory(username=f"starter-{prefix}")
    for agent in agents:
        _seed(agent, starter=starter)
    return agents


def test_r29_the_bulk_preview_runs_the_same_number_of_queries_for_2_and_20_agents(client, registry_world):
    w = registry_world
    small, large = _fleet(w, 2, "small"), _fleet(w, 20, "large")
    client.force_login(w.owner)
    client.get("/agents/selected/", {"agent": [small[0].pk], "action": "retire"}, secure=True)  # warm the caches
    counts = {}
    for name, agents in (("small", small), ("large", large)):
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/agents/selected/", {"agent": [a.pk for a in agents], "action": "retire"},
                                  secure=True)
        assert response.status_code == 200
        counts[name] = len(queries)
        radius = response.context["blast_radius"]["radius"]
        assert len(radius.tokens) == 3 * len(agents) and len(radius.runs) == 2 * len(agents)
        assert len(radius.sessions) == len(agents)
    assert counts["small"] == counts["large"], counts
    with CaptureQueriesContext(connection) as queries:
        previews.agents_preview(large, "disable")
    assert len(queries) <= 10, [q["sql"][:80] for q in queries.captured_queries]


def test_r29_bulk_disable_stops_what_its_preview_listed(client, registry_world):
    w = registry_world
    agents = _fleet(w, 3, "bulk")
    radius = previews.agents_preview(agents, "disable")
    client.force_login(w.owner)
    client.post("/agents/selected/", {"agent": [a.pk for a in agents], "action": "disable"}, secure=True)
    assert set(AccessToken.objects.filter(agent__in=agents, revoked_reason__startswith="agent")
               .values_list("pk", flat=True)) == {t.pk for t in radius.tokens}
    assert set(Run.objects.filter(agent__in=agents, status=RunStatus.CANCELLED).values_list("pk", flat=True)) == \
        {r.pk for r in radius.runs}


def test_r29_preview_api_shape_and_permissions(client, seeded):
    w = seeded
    url = f"/api/v1/agents/{w.agent.pk}/preview/"
    assert client.get(url + "?action=disable").status_code == 401  # anonymous: challenged
    client.force_login(w.contributor)  # sees the agent, may not disable it
    assert client.get(url + "?action=disable").status_code == 403
    client.force_login(w.other)  # another workspace's owner: cannot see it
    assert client.get(url + "?action=disable").status_code == 404
    client.force_login(w.owner)
    assert client.get(url + "?action=explode").status_code == 400
    assert client.get(url).status_code == 400
    body = client.get(url + "?action=retire").json()
    for key in ("tokens", "runs", "sessions", "resources", "people", "token_resources",
                "agents_without_credential", "scheduled", "assignments"):
        assert key in body
    assert isinstance(body["tokens"], int) and body["agents"][0]["name"] == "matrix-agent"
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/v1/agents/{agent_id}/preview/"]["get"]
    assert operation["tags"] == ["Blast radius"] and operation["summary"]
    assert any(tag["name"] == "Blast radius" for tag in schema["tags"])


def test_r29_credential_revoke_preview_says_when_the_agent_is_left_with_no_usable_credential(client, seeded):
    w = seeded
    secret = Credential.objects.get(identity__agent=w.agent)
    client.force_login(w.owner)
    body = client.get(f"/api/v1/credentials/{secret.pk}/preview/?action=revoke").json()
    assert body["agents_without_credential"] == ["matrix-agent"]
    assert body["tokens"] == 0 and body["tokens_kept"] == 3  # revoking a credential leaves issued tokens to expire
    page = client.get(f"/governance/blast-radius/agents/{w.agent.pk}/credentials/secret/{secret.pk}/revoke/",
                      secure=True).content.decode()
    assert 'data-radius="no-credential"' in page and "gets no new token" in page

    registry.credential_rotate(actor=w.owner, agent=w.agent)  # a second secret: revoking one leaves the other
    body = client.get(f"/api/v1/credentials/{secret.pk}/preview/?action=revoke").json()
    assert body["agents_without_credential"] == []
    client.force_login(w.contributor)
    assert client.get(f"/api/v1/credentials/{secret.pk}/preview/?action=revoke").status_code == 403
    client.force_login(w.other)
    assert client.get(f"/api/v1/credentials/{secret.pk}/preview/?action=revoke").status_code == 404


def test_r29_revoking_the_last_credential_tells_the_owners_and_sponsors(client, seeded):
    w = seeded
    secret = Credential.objects.get(identity__agent=w.agent)
    client.force_login(w.owner)
    client.post(f"/agents/{w.agent.pk}/credentials/{secret.pk}/revoke/", secure=True)
    notes = Notification.objects.filter(subject="A credential of matrix-agent was revoked")
    assert {n.recipient.username for n in notes} == {"owner", "owner_b"}
    assert "no usable credential left" in notes.first().body


def test_r29_ending_an_assignment_revokes_exactly_the_tokens_its_preview_listed(client, seeded):
    w = seeded
    package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name="Responder", policy={"approver_kind": "workspace_owners",
                                                                    "justification_required": False},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    assignment = access_packages.assignment_request(actor=w.owner_b, package=package, agent=w.agent)
    access_packages.assignment_decide(actor=w.owner, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    assert assignment.status == "active"
    now = timezone.now()
    carrying = AccessToken.objects.create(token_hash="carrying", agent=w.agent, client_id="c", audience=ONE,
                                          expires_at=now + timedelta(minutes=30),
                                          scopes=["User.Read.All", "SecurityIncident.ReadWrite.All"],
                                          run=w.runs[1])
    SignIn.objects.create(agent=w.agent, at=now - timedelta(hours=1), outcome="success", resource=TWO,
                          granted_scopes=["SecurityIncident.ReadWrite.All"])
    client.force_login(w.owner)
    body = client.get(f"/api/v1/assignments/{assignment.pk}/preview/?action=end").json()
    assert body["token_ids"] == [carrying.pk]
    assert [run["id"] for run in body["runs"]] == [w.runs[1].pk]
    assert [r["resource"] for r in body["resources"]] == [TWO] and body["scopes"] == ["SecurityIncident.ReadWrite.All"]
    assert {p["username"] for p in body["people"]} >= {"owner", "owner_b", "contributor"}
    page = client.get(f"/governance/blast-radius/assignments/{assignment.pk}/end/", secure=True)
    assert page.status_code == 200 and 'id="blast-radius"' in page.content.decode()
    client.post(f"/governance/assignments/{assignment.pk}/revoke/", secure=True)
    assert set(AccessToken.objects.filter(agent=w.agent, revoked_at__isnull=False,
                                          revoked_reason="assignment revoked").values_list("pk", flat=True)) \
        == {carrying.pk}
    assert Notification.objects.filter(subject="matrix-agent no longer has Responder").exists()
    client.force_login(w.contributor)
    assert client.get(f"/api/v1/assignments/{assignment.pk}/preview/?action=end").status_code in (403, 404)


def test_r29_the_package_removal_preview_covers_every_open_assignment_of_it(client, seeded):
    w = seeded
    package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name="Responder", policy={"approver_kind": "workspace_owners",
                                                                    "justification_required": False},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    first = access_packages.assignment_request(actor=w.owner_b, package=package, agent=w.agent)
    access_packages.assignment_decide(actor=w.owner, assignment=first, approve=True)
    second_agent = Agent.objects.get(name="bystander")
    access_packages.assignment_request(actor=w.owner_b, package=package, agent=second_agent)  # pending
    later = timezone.now() + timedelta(minutes=30)
    tokens = [AccessToken.objects.create(token_hash=f"pkg-{agent.pk}", agent=agent, client_id="c", audience=ONE,
                                         expires_at=later, scopes=["SecurityIncident.ReadWrite.All"])
              for agent in (w.agent, second_agent)]
    client.force_login(w.owner)
    with CaptureQueriesContext(connection) as queries:
        body = client.get(f"/api/v1/access-packages/{package.pk}/preview/?action=remove").json()
    assert body["assignments"] == 2 and sorted(body["token_ids"]) == sorted(t.pk for t in tokens)
    assert {a["name"] for a in body["agents"]} == {"matrix-agent", "bystander"}
    assert len(queries) < 30
    client.force_login(w.contributor)
    assert client.get(f"/api/v1/access-packages/{package.pk}/preview/?action=remove").status_code == 403
    client.force_login(w.other)
    assert client.get(f"/api/v1/access-packages/{package.pk}/preview/?action=remove").status_code == 404
