"""A run's findings at scale: grouped by kind and by agent (each group a filter), and applied many at once where the
action needs no choice and shows no secret — each through the same service as one by one, with its own audit event,
all or nothing."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agents import registry
from agents.choices import AgentStatus
from agents.models import Agent
from governance.runs import builtin as builtin_agents
from governance.runs.models import Run
from portal.models import AuditEvent
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


@pytest.fixture
def findings_run(world):
    blueprint = {b.name: b for b in builtin_agents.install()}["AgentHygieneAgent"]
    hygiene = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, "hygiene", sponsors=[world.owner, world.owner_b], owners=[world.owner])).agent
    other = make_blueprint("Idle", permissions=("User.Read.All",))
    idle = [registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        other, f"idle-{n}", sponsors=[world.owner], owners=[world.owner])).agent for n in range(3)]
    findings = [{"agent_id": a.pk, "agent": a.name, "kind": "unused_agent", "level": "medium",
                 "detail": f"{a.name} has not been used for 60 days", "action": "retire"} for a in idle]
    findings.append({"agent_id": idle[0].pk, "agent": idle[0].name, "kind": "secret_expiring", "level": "high",
                     "detail": "its secret expires in 3 days", "action": "rotate"})
    world.run = Run.objects.create(agent=hygiene, status="succeeded", findings=findings)
    world.idle = idle
    return world


def _shown(html: str) -> list[str]:
    return re.findall(r'<tr data-finding="(\d+)"', html)


def test_findings_group_by_kind_and_agent_and_filter(client, findings_run):
    client.force_login(findings_run.owner)
    url = reverse("run-detail", args=[findings_run.run.pk])
    html = client.get(url, secure=True).content.decode()
    assert 'data-group-kind="unused_agent"' in html and ">unused_agent (3)</a>" in html
    assert ">secret_expiring (1)</a>" in html and ">idle-0 (2)</a>" in html
    assert sorted(_shown(html)) == ["0", "1", "2", "3"]
    assert sorted(_shown(client.get(url + "?kind=unused_agent", secure=True).content.decode())) == ["0", "1", "2"]
    assert sorted(_shown(client.get(url + "?agent=idle-0", secure=True).content.decode())) == ["0", "3"]
    narrowed = client.get(url + "?agent=idle-0&kind=unused_agent", secure=True).content.decode()
    assert _shown(narrowed) == ["0"] and "Showing 1 of 4 findings." in narrowed
    # Only retirements may be selected together; the rotation (it shows a secret once) is applied on its own.
    assert len(re.findall(r'name="finding" value="\d+" form="findings-bulk"', html)) == 3


def test_selected_findings_apply_together_each_with_its_audit_event(client, findings_run):
    client.force_login(findings_run.owner)
    response = client.post(reverse("run-apply-many", args=[findings_run.run.pk]),
                           {"finding": ["0", "1"], "back": "kind=unused_agent"}, secure=True)
    assert response.status_code == 302
    assert response["Location"] == reverse("run-detail", args=[findings_run.run.pk]) + "?kind=unused_agent#findings"
    retired = set(Agent.objects.filter(status=AgentStatus.RETIRED).values_list("name", flat=True))
    assert retired == {"idle-0", "idle-1"}
    assert AuditEvent.objects.filter(action="agent.retire").count() == 2
    findings_run.run.refresh_from_db()
    assert [bool(f.get("applied")) for f in findings_run.run.findings] == [True, True, False, False]


def test_bulk_apply_is_all_or_nothing_and_refuses_what_must_be_applied_alone(client, findings_run):
    client.force_login(findings_run.owner)
    events = AuditEvent.objects.count()
    response = client.post(reverse("run-apply-many", args=[findings_run.run.pk]), {"finding": ["0", "3"]},
                           secure=True, follow=True)
    assert "is applied on its own" in response.content.decode()
    registry.agent_retire(actor=findings_run.owner, agent=findings_run.idle[2])  # finding 2 can no longer apply
    events = AuditEvent.objects.count()
    response = client.post(reverse("run-apply-many", args=[findings_run.run.pk]), {"finding": ["1", "2"]},
                           secure=True, follow=True)
    assert "Nothing was applied." in response.content.decode()
    assert AuditEvent.objects.count() == events
    assert Agent.objects.get(name="idle-1").status == AgentStatus.ACTIVE


def test_a_contributor_cannot_apply_findings_in_bulk(client, findings_run):
    client.force_login(findings_run.contributor)
    response = client.post(reverse("run-apply-many", args=[findings_run.run.pk]), {"finding": ["0"]}, secure=True)
    assert response.status_code in (403, 404)
    assert not Agent.objects.filter(status=AgentStatus.RETIRED).exists()
