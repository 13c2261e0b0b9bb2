"""Bulk actions on the agents list: one confirmation page lists what ends for each selected agent; confirming runs
each agent's own service (one audit event each), all or nothing; the list's filters survive the round trip; the
list exports as CSV with its filters; the bulk-upload template is the bulk file's header and one example row."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import bulk, registry
from agents.choices import AgentStatus
from agents.models import Agent
from governance.signin.models import AccessToken
from portal.models import AuditEvent
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet(world):
    blueprint = make_blueprint("FleetAgent", permissions=("User.Read.All",))
    specs = [agent_spec(blueprint, f"fleet-{n}", sponsors=[world.owner], owners=[world.owner]) for n in range(3)]
    registry.agents_provision(actor=world.owner, workspace=world.alpha, specs=specs)
    agents = list(Agent.objects.filter(workspace=world.alpha).order_by("name"))
    later = timezone.now() + timedelta(hours=1)
    for n, agent in enumerate(agents):
        for k in range(n + 1):
            AccessToken.objects.create(token_hash=f"{agent.pk}-{k}", agent=agent, client_id="c", expires_at=later)
    world.fleet = agents
    return world


def _ids(agents):
    return [agent.pk for agent in agents]


def test_bulk_confirmation_lists_what_ends_for_each_agent_and_changes_nothing(client, fleet):
    client.force_login(fleet.owner)
    events = AuditEvent.objects.count()
    response = client.get("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "retire",
                                                "back.status": "active"}, secure=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Retire: 3 agents" in html and "cannot be undone" in html
    row = html.split('data-agent="fleet-2"', 1)[1].split("</tr>", 1)[0]
    assert '<td data-ends="tokens">3</td>' in row and '<td data-ends="credentials">1</td>' in row
    assert '<td data-ends="assignments">0</td>' in row
    assert 'name="back.status" value="active"' in html
    assert AuditEvent.objects.count() == events and not Agent.objects.filter(status=AgentStatus.RETIRED).exists()


def test_bulk_retire_runs_each_agents_service_with_its_own_audit_event_and_keeps_the_filters(client, fleet):
    client.force_login(fleet.owner)
    response = client.post("/agents/selected/", {"agent": _ids(fleet.fleet[:2]), "action": "retire",
                                                 "back.status": "active", "back.q": "fleet"}, secure=True)
    assert response.status_code == 302 and response["Location"] == "/agents/?q=fleet&status=active"
    assert set(Agent.objects.filter(status=AgentStatus.RETIRED).values_list("name", flat=True)) == {"fleet-0",
                                                                                                  "fleet-1"}
    assert AuditEvent.objects.filter(action="agent.retire").count() == 2
    assert not AccessToken.objects.filter(agent__in=fleet.fleet[:2], revoked_at__isnull=True).exists()


def test_bulk_disable_then_enable_and_add_sponsor(client, fleet):
    client.force_login(fleet.owner)
    client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "disable"}, secure=True)
    assert set(Agent.objects.values_list("status", flat=True)) == {AgentStatus.DISABLED}
    assert AuditEvent.objects.filter(action="agent.disable").count() == 3
    client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "enable"}, secure=True)
    assert set(Agent.objects.values_list("status", flat=True)) == {AgentStatus.ACTIVE}
    response = client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "add_sponsor",
                                                 "sponsor": "owner_b"}, secure=True)
    assert response["Location"] == "/agents/"  # the person added is not the list's sponsor filter
    assert AuditEvent.objects.filter(action="agent.sponsor_add").count() == 3


def test_bulk_action_is_all_or_nothing_and_says_why_in_words(client, fleet):
    agent = fleet.fleet[0]
    registry.agent_disable(actor=fleet.owner, agent=agent)
    client.force_login(fleet.owner)
    events = AuditEvent.objects.count()
    page = client.get("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "disable"}, secure=True)
    assert "fleet-0: it is disabled already." in page.content.decode() and "disabled>" in page.content.decode()
    response = client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "disable"}, secure=True,
                           follow=True)
    assert "fleet-0: it is disabled already. Nothing was changed." in response.content.decode()
    assert Agent.objects.filter(status=AgentStatus.ACTIVE).count() == 2 and AuditEvent.objects.count() == events

    response = client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "add_sponsor",
                                                 "sponsor": "nobody"}, secure=True, follow=True)
    assert "No user is called “nobody”." in response.content.decode() and AuditEvent.objects.count() == events


def test_bulk_action_refuses_a_contributor_and_hides_other_workspaces_agents(client, fleet):
    client.force_login(fleet.contributor)
    events = AuditEvent.objects.count()
    response = client.post("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "retire"}, secure=True)
    assert response.status_code == 403
    assert AuditEvent.objects.count() == events and not Agent.objects.filter(status=AgentStatus.RETIRED).exists()
    client.force_login(fleet.other)
    assert client.get("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "disable"},
                      secure=True).status_code == 404


def test_bulk_confirmation_queries_do_not_grow_with_the_selection(client, fleet):
    client.force_login(fleet.owner)
    with CaptureQueriesContext(connection) as one:
        client.get("/agents/selected/", {"agent": _ids(fleet.fleet[:1]), "action": "retire"}, secure=True)
    with CaptureQueriesContext(connection) as three:
        client.get("/agents/selected/", {"agent": _ids(fleet.fleet), "action": "retire"}, secure=True)
    assert len(three.captured_queries) <= len(one.captured_queries) + 6  # the per-agent permission checks only


def test_agents_list_exports_its_filtered_rows_as_csv(client, fleet):
    registry.agent_disable(actor=fleet.owner, agent=fleet.fleet[1])
    client.force_login(fleet.owner)
    response = client.get("/agents/export/?status=disabled", secure=True)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["name"] for row in rows] == ["fleet-1"]
    assert rows[0]["sponsors"] == "owner" and rows[0]["owners"] == "owner" and rows[0]["status"] == "disabled"


def test_bulk_upload_template_is_the_bulk_files_header_and_one_example_that_parses(client, fleet):
    client.force_login(fleet.owner)
    response = client.get("/agents/bulk/template.csv", secure=True)
    assert response.status_code == 200 and 'filename="agents-bulk-template.csv"' in response["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(response.content.decode())))
    assert lines[0] == ["blueprint", "name", "identity_type", "scope", "sponsors", "owners", "attributes",
                        "expires_at"]
    assert tuple(lines[0]) == bulk.COLUMNS[:8] and len(lines) == 2
    assert lines[1][4] == "owner;owner2"  # the same ";" separator as the wizard's lists and the export
