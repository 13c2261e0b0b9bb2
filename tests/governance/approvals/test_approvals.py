"""R14–R16: partner agents that read Microsoft data wait for a Global Administrator."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.approvals import services as approvals
from governance.approvals.models import ApprovalRequest
from portal.models import AuditEvent, JobRun, Notification, User
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint

pytestmark = pytest.mark.django_db
DEFENDER = ("SecurityIncident.Read.All", "SecurityAlert.Read.All")


@pytest.fixture
def partner(db):
    return make_blueprint("TaniumThreatAgent", publisher_kind="partner", permissions=DEFENDER)


@pytest.fixture
def ga2(world):
    second = UserFactory(username="ga2")
    grant_role(second, "global-administrator")
    return User.objects.get(pk=second.pk)


def _pending_agent(world, blueprint, name="tanium-triage", actor=None):
    actor = actor or world.contributor
    spec = agent_spec(blueprint, name, identity_type="user_account", run_as_user=actor, scope="user",
                      sponsors=[actor], owners=[actor], justification="Triage Tanium alerts with Defender context")
    return registry.agent_create(actor=actor, workspace=world.alpha, spec=spec).agent


def test_r14_a_partner_blueprint_reading_microsoft_data_waits_for_approval(world, partner):
    assert approvals.needs_approval(partner)
    agent = _pending_agent(world, partner)
    assert agent.status == "pending_approval"
    request = ApprovalRequest.objects.get(agent=agent)
    assert request.status == "pending" and request.requester == world.contributor
    assert request.permissions == sorted(DEFENDER) and request.digest == partner.permission_digest
    assert "Defender" in request.justification or "Tanium" in request.justification
    assert Notification.objects.filter(recipient=world.ga, link=f"/governance/approvals/{request.pk}/").exists()
    with pytest.raises(ValidationError, match="not approved"):
        registry.agent_activate(actor=world.contributor, agent=agent)


def test_r14_other_blueprints_need_no_approval(world):
    quiet_partner = make_blueprint("ShodanLookup", publisher_kind="partner", permissions=())
    organisation = make_blueprint("OrgAgent", publisher_kind="organisation", permissions=DEFENDER)
    microsoft = make_blueprint("MsAgent", publisher_kind="microsoft", permissions=DEFENDER)
    for blueprint in (quiet_partner, organisation, microsoft):
        assert not approvals.needs_approval(blueprint)
        assert _pending_agent(world, blueprint, name=blueprint.name.lower()).status == "active"
    assert not ApprovalRequest.objects.exists()


def test_r14_the_wizard_says_which_case_applies(client, world, partner):
    client.force_login(world.contributor)
    body = client.get("/agents/new/").content.decode()
    assert "waits in “pending approval” until a Global Administrator approves" in body


def test_r15_only_global_administrators_decide_and_never_their_own_request(world, partner, ga2, client):
    agent = _pending_agent(world, partner, actor=world.ga)  # a Global Administrator asks for themselves
    request = ApprovalRequest.objects.get(agent=agent)
    for outsider in (world.owner, world.inherited, world.contributor):
        with pytest.raises(PermissionDenied):
            approvals.approval_decide(actor=outsider, approval=request, approve=True)
    with pytest.raises(PermissionDenied, match="own request"):  # service
        approvals.approval_decide(actor=world.ga, approval=request, approve=True)
    client.force_login(world.ga)
    assert client.post(f"/api/v1/approval-requests/{request.pk}/approve/").status_code == 403  # API
    assert client.post(f"/governance/approvals/{request.pk}/approve/").status_code == 403  # page (no button either)
    assert "Approve this permission set" not in client.get(f"/governance/approvals/{request.pk}/").content.decode()
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"
    approvals.approval_decide(actor=ga2, approval=request, approve=True)
    assert ApprovalRequest.objects.get(pk=request.pk).decided_by == ga2


def test_r15_denial_needs_a_reason_and_leaves_the_agent_in_draft_with_it(world, partner):
    agent = _pending_agent(world, partner)
    request = ApprovalRequest.objects.get(agent=agent)
    with pytest.raises(ValidationError, match="reason"):
        approvals.approval_decide(actor=world.ga, approval=request, approve=False, reason="  ")
    approvals.approval_decide(actor=world.ga, approval=request, approve=False, reason="Reads too much incident data")
    agent.refresh_from_db()
    assert agent.status == "draft"
    notes = registry.status_notes(agent)
    assert any("Reads too much incident data" in text for text, _link in notes)
    assert Notification.objects.filter(recipient=world.contributor, subject__contains="denied").exists()


def test_r15_a_second_decision_is_refused_as_already_decided(world, partner, ga2, client):
    request = ApprovalRequest.objects.get(agent=_pending_agent(world, partner))
    approvals.approval_decide(actor=world.ga, approval=request, approve=True)
    with pytest.raises(approvals.AlreadyDecided):
        approvals.approval_decide(actor=ga2, approval=request, approve=False, reason="late")
    client.force_login(ga2)
    response = client.post(f"/api/v1/approval-requests/{request.pk}/deny/", {"reason": "late"})
    assert response.status_code == 409 and "already approved" in response.json()["errors"][0]
    assert AuditEvent.objects.filter(target_type="approvals.approvalrequest", action__in=[
        "approval.approve", "approval.deny"]).count() == 1


def test_r15_a_changed_permission_set_needs_a_new_approval(world, partner):
    v1_agent = _pending_agent(world, partner)
    approvals.approval_decide(actor=world.ga, approval=ApprovalRequest.objects.get(agent=v1_agent), approve=True)
    registry.agent_activate(actor=world.contributor, agent=v1_agent)
    another_on_v1 = _pending_agent(world, partner, name="tanium-2")
    assert another_on_v1.status == "active"  # the approval covers this exact set for everyone
    v2 = make_blueprint("TaniumThreatAgent", version=2, publisher_kind="partner",
                        permissions=(*DEFENDER, "ThreatHunting.Read.All"))
    assert v2.permission_digest != partner.permission_digest
    on_v2 = _pending_agent(world, v2, name="tanium-v2")
    assert on_v2.status == "pending_approval"
    with pytest.raises(ValidationError, match="not approved"):
        registry.agent_move_version(actor=world.contributor, agent=v1_agent, blueprint=v2)
    v1_agent.refresh_from_db()
    assert v1_agent.blueprint == partner and v1_agent.status == "active"  # keeps running on the old set
    approvals.approval_decide(actor=world.ga, approval=ApprovalRequest.objects.get(agent=on_v2), approve=True)
    registry.agent_move_version(actor=world.contributor, agent=v1_agent, blueprint=v2)
    assert Agent.objects.get(pk=v1_agent.pk).blueprint == v2


def test_r15_withdraw_then_ask_again(world, partner):
    agent = _pending_agent(world, partner)
    request = ApprovalRequest.objects.get(agent=agent)
    approvals.approval_withdraw(actor=world.contributor, approval=request)
    agent.refresh_from_db()
    assert agent.status == "draft"
    with pytest.raises(approvals.AlreadyDecided):
        approvals.approval_decide(actor=world.ga, approval=request, approve=True)
    again = approvals.approval_request_create(actor=world.contributor, agent=agent, justification="Second try")
    agent.refresh_from_db()
    assert again.status == "pending" and agent.status == "pending_approval"


def test_r15_requests_expire_and_the_job_is_idempotent(world, partner, settings):
    agent = _pending_agent(world, partner)
    request = ApprovalRequest.objects.get(agent=agent)
    ApprovalRequest.objects.filter(pk=request.pk).update(created_at=timezone.now() - timedelta(days=20),
                                                         expires_at=timezone.now() - timedelta(days=6))
    call_command("run_governance_jobs", "--job", "expire_approval_requests")
    call_command("run_governance_jobs", "--job", "expire_approval_requests")
    request.refresh_from_db()
    agent.refresh_from_db()
    assert request.status == "expired" and agent.status == "draft"
    runs = list(JobRun.objects.filter(job="expire_approval_requests").order_by("id"))
    assert [r.counts for r in runs] == [{"expired": 1}, {"expired": 0}]
    assert AuditEvent.objects.filter(action="approval.expire").count() == 1
    with pytest.raises(ValidationError):
        approvals.approval_decide(actor=world.ga, approval=request, approve=True)


def test_r16_after_approval_the_contributor_completes_setup(world, partner, client):
    agent = _pending_agent(world, partner)
    approvals.approval_decide(actor=world.ga, approval=ApprovalRequest.objects.get(agent=agent), approve=True)
    client.force_login(world.contributor)
    body = client.get(f"/agents/{agent.pk}/").content.decode()
    assert "Complete setup" in body and "Approved by ga" in body
    client.post(f"/agents/{agent.pk}/activate/")
    assert Agent.objects.get(pk=agent.pk).status == "active"


def test_others_see_only_their_own_requests_and_those_of_agents_they_manage(world, partner, client):
    request = ApprovalRequest.objects.get(agent=_pending_agent(world, partner))
    client.force_login(world.owner)  # alpha's owner manages the contributor's agent: sees where it stands
    assert client.get(f"/governance/approvals/{request.pk}/").status_code == 200
    client.force_login(world.other)
    assert client.get(f"/governance/approvals/{request.pk}/").status_code == 404
    assert str(request.pk) not in client.get("/governance/approvals/").content.decode().split("approvals-table")[1]
    client.force_login(world.ga)
    body = client.get(f"/governance/approvals/{request.pk}/").content.decode()
    assert "SecurityIncident.Read.All" in body and "Microsoft Defender XDR" in body and "Approve" in body


@pytest.mark.django_db(transaction=True)
def test_r15_two_global_administrators_racing_exactly_one_decides_on_postgres(postgres, catalog):
    from tests.factories import make_workspace

    requester, a, b = UserFactory(username="req"), UserFactory(username="ga-a"), UserFactory(username="ga-b")
    grant_role(a, "global-administrator")
    grant_role(b, "global-administrator")
    workspace = make_workspace("race", owners=[requester, UserFactory(username="second")])
    partner = make_blueprint("RacePartner", publisher_kind="partner", permissions=DEFENDER)
    spec = agent_spec(partner, "race-agent", identity_type="user_account", run_as_user=requester, scope="user",
                      sponsors=[requester], owners=[requester])
    agent = registry.agent_create(actor=requester, workspace=workspace, spec=spec).agent
    request = ApprovalRequest.objects.get(agent=agent)
    first_in = threading.Event()
    outcomes = {}

    def approve():
        try:
            with transaction.atomic():
                approvals.approval_decide(actor=User.objects.get(pk=a.pk), approval=request, approve=True)
                first_in.set()
                time.sleep(1.0)
            outcomes["approve"] = "ok"
        except Exception as error:
            outcomes["approve"] = error
        finally:
            first_in.set()
            connection.close()

    def deny():
        first_in.wait(10)
        try:
            approvals.approval_decide(actor=User.objects.get(pk=b.pk), approval=request, approve=False,
                                      reason="no")
            outcomes["deny"] = "ok"
        except Exception as error:
            outcomes["deny"] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=approve), threading.Thread(target=deny)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes["approve"] == "ok"
    assert isinstance(outcomes["deny"], approvals.AlreadyDecided), outcomes["deny"]
    assert ApprovalRequest.objects.get(pk=request.pk).status == "approved"
    assert AuditEvent.objects.filter(action__in=["approval.approve", "approval.deny"]).count() == 1
