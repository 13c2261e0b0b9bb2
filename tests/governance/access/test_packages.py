"""R17, R18 (and R5, R7, R8 through the lifecycle jobs): time-bound access that ends by itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.utils import timezone

from agents import policy, registry
from agents.models import Agent
from governance.access import lifecycle
from governance.access import services as ap
from governance.access.models import Assignment
from portal import directory
from portal.models import AuditEvent, JobRun, Notification, Permission, User
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def perms(*names):
    return list(Permission.objects.filter(name__in=names, kind="application"))


def package(world, name="Responder", *, permissions=("SecurityIncident.ReadWrite.All",), **policy_fields):
    fields = {"approver_kind": "workspace_owners", "duration_kind": "hours", "duration_value": 8,
              "max_hours": 48, "justification_required": True}
    fields.update(policy_fields)
    approvers = fields.pop("approvers", ())
    second = fields.pop("second_approvers", ())
    incompatible = fields.pop("incompatible_with", ())
    return ap.package_save(actor=world.owner, workspace=world.alpha, name=name, permissions=perms(*permissions),
                           policy=fields, approvers=approvers, second_approvers=second,
                           incompatible_with=incompatible)


def test_r17_packages_refuse_privileged_permissions_and_only_owners_manage_them(registry_world):
    w = registry_world
    with pytest.raises(ValidationError, match="can never reach an agent"):
        ap.package_save(actor=w.owner, workspace=w.alpha, name="Too much", policy={},
                        permissions=perms("RoleManagement.ReadWrite.Directory"))
    with pytest.raises(PermissionDenied):
        ap.package_save(actor=w.contributor, workspace=w.alpha, name="Nope", policy={},
                        permissions=perms("User.Read.All"))
    created = package(w)
    assert AuditEvent.objects.filter(action="package.create", target_id=str(created.pk)).exists()


def test_r17_a_sponsor_requests_an_owner_approves_and_the_permission_holds_until_the_end(registry_world):
    w = registry_world  # matrix-agent: sponsor owner, agent owner owner_b
    responder = package(w)
    with pytest.raises(ValidationError, match="justification"):
        ap.assignment_request(actor=w.owner, package=responder, agent=w.agent)
    assignment = ap.assignment_request(actor=w.owner, package=responder, agent=w.agent, justification="incident 42",
                                       hours=2)
    assert assignment.status == "pending"
    assert "SecurityIncident.ReadWrite.All" not in ap.agent_permissions_now(w.agent)
    assert Notification.objects.filter(recipient=w.owner_b, subject__contains="Responder").exists()
    ap.assignment_decide(actor=w.owner_b, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    assert assignment.status == "active"
    assert timedelta(hours=1, minutes=59) < assignment.expires_at - assignment.starts_at <= timedelta(hours=2)
    assert "SecurityIncident.ReadWrite.All" in ap.agent_permissions_now(w.agent)
    assert "User.Read.All" in ap.agent_permissions_now(w.agent)  # the blueprint's fixed grant stays


def test_r17_the_requester_never_approves_their_own_request(registry_world, client):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w), agent=w.agent, justification="x")
    with pytest.raises(PermissionDenied, match="own request"):
        ap.assignment_decide(actor=w.owner, assignment=assignment, approve=True)
    client.force_login(w.owner)
    assert client.post(f"/api/v1/assignments/{assignment.pk}/approve/").status_code == 403
    assert client.post(f"/governance/assignments/{assignment.pk}/approve/").status_code == 403
    assert Assignment.objects.get(pk=assignment.pk).status == "pending"


def test_r17_two_stage_approval(registry_world):
    w = registry_world
    staged = package(w, "Staged", approver_kind="named", approvers=[w.owner_b], second_approver_kind="named",
                     second_approvers=[w.ga])
    assignment = ap.assignment_request(actor=w.owner, package=staged, agent=w.agent, justification="x")
    with pytest.raises(PermissionDenied):
        ap.assignment_decide(actor=w.ga, assignment=assignment, approve=True)  # not stage 1's approver
    ap.assignment_decide(actor=w.owner_b, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    assert (assignment.status, assignment.stage) == ("pending", 2)
    ap.assignment_decide(actor=w.ga, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    assert assignment.status == "active" and assignment.second_approver == w.ga


def test_r18_incompatible_packages_cannot_be_held_together(registry_world):
    w = registry_world
    first = package(w, "Responder", approver_kind="none")
    second = package(w, "Remediation", approver_kind="none", incompatible_with=[first],
                     permissions=("DeviceManagementManagedDevices.ReadWrite.All",))
    ap.assignment_request(actor=w.owner, package=first, agent=w.agent, justification="x")
    with pytest.raises(ValidationError, match="Responder, which is incompatible with Remediation"):
        ap.assignment_request(actor=w.owner, package=second, agent=w.agent, justification="x")


def test_r18_an_assignment_one_second_past_its_end_is_refused_before_any_job(registry_world):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w, approver_kind="none"), agent=w.agent,
                                       justification="x")
    now = timezone.now()
    Assignment.objects.filter(pk=assignment.pk).update(starts_at=now - timedelta(hours=1),
                                                       expires_at=now - timedelta(seconds=1))
    assert Assignment.objects.get(pk=assignment.pk).status == "active"  # no job has run
    assert "SecurityIncident.ReadWrite.All" not in ap.agent_permissions_now(w.agent)
    assert "SecurityIncident.ReadWrite.All" in ap.agent_permissions_now(w.agent, now - timedelta(seconds=2))


def test_r18_every_assignment_ends_and_the_job_ends_it_once(registry_world):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w, approver_kind="none"), agent=w.agent,
                                       justification="x")
    assert assignment.expires_at is not None
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() - timedelta(minutes=1),
                                                       starts_at=timezone.now() - timedelta(hours=2))
    call_command("run_governance_jobs", "--job", "expire_assignments")
    call_command("run_governance_jobs", "--job", "expire_assignments")
    assignment.refresh_from_db()
    assert assignment.status == "expired" and assignment.ended_at
    assert AuditEvent.objects.filter(action="assignment.expire", target_id=str(assignment.pk)).count() == 1
    assert [r.counts["expired"] for r in JobRun.objects.filter(job="expire_assignments").order_by("id")] == [1, 0]


def test_r18_undecided_requests_expire(registry_world):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w), agent=w.agent, justification="x")
    Assignment.objects.filter(pk=assignment.pk).update(request_expires_at=timezone.now() - timedelta(seconds=1))
    lifecycle.expire_assignments()
    assert Assignment.objects.get(pk=assignment.pk).status == "request_expired"


def test_r18_extension_within_the_maximum_and_with_approval(registry_world):
    w = registry_world
    responder = package(w, approver_kind="named", approvers=[w.owner_b], max_hours=10)
    assignment = ap.assignment_request(actor=w.owner, package=responder, agent=w.agent, justification="x")
    ap.assignment_decide(actor=w.owner_b, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    end = assignment.expires_at
    ap.assignment_extend(actor=w.owner, assignment=assignment, hours=24)
    assignment.refresh_from_db()
    assert assignment.expires_at == end and assignment.extension_until  # waits for approval
    ap.assignment_decide(actor=w.owner_b, assignment=assignment, approve=True)
    assignment.refresh_from_db()
    assert assignment.expires_at - assignment.starts_at <= timedelta(hours=10)  # capped at the maximum
    with pytest.raises(ValidationError, match="maximum"):
        ap.assignment_extend(actor=w.owner, assignment=assignment, hours=5)


def test_r18_sponsors_revoke_early_and_retirement_ends_assignments(registry_world):
    w = registry_world
    responder = package(w, approver_kind="none")
    first = ap.assignment_request(actor=w.owner, package=responder, agent=w.agent, justification="x")
    ap.assignment_revoke(actor=w.owner, assignment=first)  # owner is the agent's sponsor
    assert "SecurityIncident.ReadWrite.All" not in ap.agent_permissions_now(w.agent)
    with pytest.raises(PermissionDenied):
        ap.assignment_revoke(actor=w.contributor, assignment=ap.assignment_request(
            actor=w.owner, package=responder, agent=w.agent, justification="again"))
    counts = registry.agent_retire(actor=w.owner, agent=w.agent)
    assert counts["assignments_ended"] == 1
    assert not Assignment.objects.filter(agent=w.agent, status__in=["pending", "active"]).exists()


def test_r18_reminders_reach_sponsors_before_the_end(registry_world):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w, approver_kind="none", duration_value=30),
                                       agent=w.agent, justification="x")
    Assignment.objects.filter(pk=assignment.pk).update(expires_at=timezone.now() + timedelta(hours=20))
    # Inside both the 14-day and the 1-day window: one notice, with the real time left; both count as done.
    assert lifecycle.send_expiry_reminders()["reminders"] == 1
    assert lifecycle.send_expiry_reminders()["reminders"] == 0
    notices = Notification.objects.filter(recipient=w.owner, subject__contains="ends in")
    assert [n.subject for n in notices] == ["Responder for matrix-agent ends in 19 hour(s)"]
    assert notices.first().link == f"/governance/assignments/{assignment.pk}/"
    assert sorted(Assignment.objects.get(pk=assignment.pk).reminded_days) == [1, 14]


def test_r8_agents_are_disabled_at_expiry_and_retired_after_the_grace(registry_world, settings):
    w = registry_world
    now = timezone.now()
    Agent.objects.filter(pk=w.agent.pk).update(created_at=now - timedelta(days=60), expires_at=now - timedelta(hours=1))
    assert lifecycle.expire_agents() == {"disabled": 1, "retired": 0}
    assert Agent.objects.get(pk=w.agent.pk).status == "disabled"
    Agent.objects.filter(pk=w.agent.pk).update(expires_at=now - timedelta(days=settings.RETIRE_GRACE_DAYS + 1))
    assert lifecycle.expire_agents() == {"disabled": 0, "retired": 1}
    assert Agent.objects.get(pk=w.agent.pk).status == "retired"
    assert lifecycle.expire_agents() == {"disabled": 0, "retired": 0}


def test_r7_a_deactivated_sponsor_is_replaced_by_their_manager(registry_world):
    w = registry_world
    boss = UserFactory(username="boss")
    leaver = UserFactory(username="leaver", manager=boss)
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=leaver, role=policy.SPONSOR_AGENT)
    registry.agent_person_remove(actor=w.owner, agent=w.agent, user=w.owner, role=policy.SPONSOR_AGENT)
    directory.user_deactivate(actor=w.ga, user=leaver)
    counts = lifecycle.sweep_orphans()
    assert counts["replaced"] == 1 and counts["orphaned"] == 0
    assert [u.username for u in registry.people_of(w.agent)[policy.SPONSOR_AGENT]] == ["boss"]
    assert Notification.objects.filter(recipient=boss, subject__contains="asked to sponsor").exists()  # R30


def test_r7_without_a_manager_the_agent_is_flagged_then_disabled_after_the_grace(registry_world, settings):
    w = registry_world
    leaver = UserFactory(username="leaver")
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=leaver, role=policy.SPONSOR_AGENT)
    registry.agent_person_remove(actor=w.owner, agent=w.agent, user=w.owner, role=policy.SPONSOR_AGENT)
    directory.user_deactivate(actor=w.ga, user=leaver)
    assert lifecycle.sweep_orphans()["orphaned"] == 1
    agent = Agent.objects.get(pk=w.agent.pk)
    assert agent.orphaned_at and agent.status == "active"
    assert Notification.objects.filter(recipient=w.owner_b, subject__contains="no active sponsor").exists()
    assert lifecycle.sweep_orphans()["orphaned"] == 0  # idempotent
    long_ago = timezone.now() - timedelta(days=settings.ORPHAN_GRACE_DAYS + 1)
    Agent.objects.filter(pk=agent.pk).update(orphaned_at=long_ago)
    assert lifecycle.sweep_orphans()["disabled"] == 1
    agent.refresh_from_db()
    assert agent.status == "disabled" and agent.disabled_by == "system"


def test_r7_adding_a_sponsor_clears_the_orphan_flag(registry_world):
    w = registry_world
    leaver = UserFactory(username="leaver")
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=leaver, role=policy.SPONSOR_AGENT)
    registry.agent_person_remove(actor=w.owner, agent=w.agent, user=w.owner, role=policy.SPONSOR_AGENT)
    directory.user_deactivate(actor=w.ga, user=leaver)
    lifecycle.sweep_orphans()
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=w.newcomer, role=policy.SPONSOR_AGENT)
    assert lifecycle.sweep_orphans()["cleared"] == 1
    assert Agent.objects.get(pk=w.agent.pk).orphaned_at is None
    assert User.objects.get(username="leaver").is_active is False


def test_agent_page_shows_package_permissions_with_their_source_and_end(registry_world, client):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w, approver_kind="none"), agent=w.agent,
                                       justification="x")
    client.force_login(w.contributor)
    body = client.get(f"/agents/{w.agent.pk}/").content.decode()
    assert 'data-grant="SecurityIncident.ReadWrite.All"' in body and "Access package Responder" in body
    assert timezone.localtime(assignment.expires_at).strftime("%Y-%m-%d %H:%M") in body


def test_expiring_soon_lists_what_a_sponsor_should_look_at(registry_world, client):
    w = registry_world
    assignment = ap.assignment_request(actor=w.owner, package=package(w, approver_kind="none"), agent=w.agent,
                                       justification="x")
    client.force_login(w.owner)
    assert f"/governance/assignments/{assignment.pk}/" in client.get("/governance/access-packages/expiring/") \
        .content.decode()
    client.force_login(w.owner_b)  # an agent owner, not a sponsor
    assert "Nothing ends soon" in client.get("/governance/access-packages/expiring/").content.decode()
