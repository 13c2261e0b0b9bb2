"""Run starts (groundwork of the sessions-and-runs issue): authorised exactly like a token request (R1, R10, R13,
R20); refused starts are recorded with the reason."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import registry
from agents.models import Blueprint
from governance.conditional_access import services as conditional_access
from governance.runs import services as runs
from governance.runs.models import Run
from portal import directory
from portal.models import AuditEvent, DirectoryRole, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db
EXECUTOR = "https://executor.invalid/runs"


def _role(key: str, names) -> DirectoryRole:
    role = DirectoryRole.objects.create(key=key, name=key.title())
    role.permissions.set(Permission.objects.filter(name__in=list(names), kind="delegated"))
    return role


def test_r20_a_run_of_a_blocked_agent_is_refused_with_the_policy_named(registry_world):
    w = registry_world
    session = runs.session_open(actor=w.contributor, agent=w.agent)
    assert runs.run_start(actor=w.contributor, session=session).status == "queued"
    conditional_access.policy_save(actor=None, data={"name": "Freeze matrix-agent", "state": "on",
                                                     "grant": "block"}, agents=[w.agent])
    refused = runs.run_start(actor=w.contributor, session=session)
    assert refused.status == "refused" and "Freeze matrix-agent" in refused.refused_reason
    assert refused.policies[0]["name"] == "Freeze matrix-agent" and refused.scopes == []
    assert AuditEvent.objects.filter(action="run.refuse").count() == 1


def test_r20_report_only_does_not_refuse_a_run(registry_world):
    w = registry_world
    conditional_access.policy_save(actor=None, data={"name": "Would freeze", "state": "report_only",
                                                     "grant": "block", "all_agents": True})
    run = runs.run_start(actor=w.owner, session=runs.session_open(actor=w.owner, agent=w.agent))
    assert run.status == "queued" and run.policies[0]["outcome"] == "block" and run.scopes == ["User.Read.All"]


def test_r1_a_user_account_agent_runs_with_its_users_rights_and_stops_when_the_user_is_disabled(world):
    runner = UserFactory(username="runner")
    directory.role_assign(actor=None, user=runner, role=_role("runner-role", ["User.Read.All"]))
    agent = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        make_blueprint("RunAs", permissions=("User.Read.All", "Policy.Read.All"), executor_url=EXECUTOR), "run-as",
        sponsors=[world.owner],
        owners=[world.owner], identity_type="user_account", run_as_user=runner)).agent
    session = runs.session_open(actor=world.owner, agent=agent)
    assert runs.run_start(actor=world.owner, session=session).scopes == ["User.Read.All"]
    directory.user_deactivate(actor=world.ga, user=runner)
    refused = runs.run_start(actor=world.owner, session=session)
    assert refused.status == "refused" and "runner is disabled" in refused.refused_reason


def test_r13_a_delegated_run_never_exceeds_the_starters_rights(world):
    directory.role_assign(actor=None, user=world.contributor, role=_role("reader", ["User.Read.All"]))
    agent = registry.agent_create(actor=world.contributor, workspace=world.alpha, spec=agent_spec(
        make_blueprint("Mine", permissions=("User.Read.All", "Policy.Read.All"), executor_url=EXECUTOR), "my-agent",
        scope="user",
        sponsors=[world.contributor], owners=[world.contributor])).agent
    run = runs.run_start(actor=world.contributor, session=runs.session_open(actor=world.contributor, agent=agent))
    assert run.scopes == ["User.Read.All"] and run.delegated_for == world.contributor


def test_r10_a_user_scoped_agent_cannot_be_run_by_another_contributor(world):
    other = UserFactory(username="contributor2")
    from portal import workspaces

    workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=other, role="contributor")
    agent = registry.agent_create(actor=world.contributor, workspace=world.alpha, spec=agent_spec(
        make_blueprint("Private", permissions=("User.Read.All",), executor_url=EXECUTOR), "private-agent",
        scope="user",
        sponsors=[world.contributor], owners=[world.contributor])).agent
    with pytest.raises(PermissionDenied):
        runs.session_open(actor=other, agent=agent)
    session = runs.session_open(actor=world.owner, agent=agent)  # the workspace's owners may
    with pytest.raises(PermissionDenied):
        runs.run_start(actor=other, session=session)
    assert not Run.objects.exists()


def test_required_inputs_are_enforced_and_nothing_is_recorded_without_them(registry_world):
    w = registry_world
    Blueprint.objects.filter(pk=w.agent.blueprint_id).update(inputs=[
        {"Name": "keywords", "Required": True, "Skill": "S"}, {"Name": "days", "Required": False, "Skill": "S"}])
    session = runs.session_open(actor=w.owner, agent=w.agent)
    with pytest.raises(ValidationError) as excinfo:
        runs.run_start(actor=w.owner, session=session, inputs={"days": "7"})
    assert "keywords" in str(excinfo.value) and not Run.objects.exists()
    assert runs.run_start(actor=w.owner, session=session, inputs={"keywords": "Cisco"}).status == "queued"
