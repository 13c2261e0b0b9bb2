"""The built-in agents (R3, R7, R20, R22, R23): installed from their manifests, run through the portal API
with a real bearer token, their exact findings on a seeded set, and applying a finding through the services."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents import registry
from agents.models import Agent, AgentUserObjectPermission, Blueprint, Credential
from governance.access import services as access_packages
from governance.access.models import Assignment
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.runs import builtin as builtin_agents
from governance.runs.builtin import hygiene
from governance.runs.builtin import optimizer as ca_optimizer
from governance.runs.models import Run
from governance.runs.portal_client import PortalClient
from governance.signin.models import AccessToken, SignIn
from portal.models import AuditEvent, Permission
from tests.factories import accept_sponsorships, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

HYGIENE_PERMISSIONS = {"User.Read.All", "Application.Read.All", "AuditLog.Read.All", "RoleManagement.Read.Directory"}
CA_PERMISSIONS = {"Policy.Read.All", "User.Read.All", "RoleManagement.Read.Directory"}


# --- helpers -------------------------------------------------------------------------------------------------------
def _builtin(w, blueprint_name: str, agent_name: str):
    """Install the built-ins and set up one of them in alpha (two sponsors, both accepted: R30); returns (agent, its
    client secret)."""
    blueprints = {b.name: b for b in builtin_agents.install()}
    created = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprints[blueprint_name], agent_name, sponsors=[w.owner, w.owner_b], owners=[w.owner]))
    accept_sponsorships(created.agent)
    return created


def _bearer(client, created) -> str:
    """A real access token from the token endpoint (client credentials), as a run's worker would hold."""
    response = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": created.client_id,
                                             "client_secret": created.client_secret})
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def _agent(w, name, permissions=("User.Read.All",), sponsors=None, workspace=None, days_old=0, **spec):
    blueprint = make_blueprint(f"{name}-bp".title().replace("-", ""), permissions=permissions)
    agent = registry.agent_create(actor=w.owner if workspace is None else w.other,
                                  workspace=workspace or w.alpha, spec=agent_spec(
        blueprint, name, sponsors=sponsors or [w.owner, w.owner_b],
        owners=[w.owner] if workspace is None else [w.other], **spec)).agent
    accept_sponsorships(agent)  # the named sponsors count (R30)
    if days_old:
        past = timezone.now() - timedelta(days=days_old)
        Agent.objects.filter(pk=agent.pk).update(created_at=past)
        Credential.objects.filter(identity__agent=agent).update(created_at=past)
    return agent


def _used(agent, scopes, days_ago):
    at = timezone.now() - timedelta(days=days_ago)
    SignIn.objects.create(at=at, agent=agent, client_id="x", actor_kind="agent", outcome="success",
                          granted_scopes=scopes)
    # A permission's use is its token presented, not granted (docs/design.md, "Usage"): introspected then.
    AccessToken.objects.create(token_hash=f"used-{agent.pk}-{AccessToken.objects.count()}", agent=agent,
                               client_id="x", scopes=scopes, issued_at=at, expires_at=at + timedelta(hours=1),
                               last_used_at=at)


def _run(agent, **inputs) -> Run:
    return Run.objects.create(agent=agent, trigger="schedule", status="succeeded", inputs=inputs)


def _execute(client, created, module, **inputs):
    run = _run(created.agent, **inputs)
    with PortalClient(_bearer(client, created)) as portal:
        output = module.execute(portal, run)
        reads = portal.reads
    return run, output, reads


def _package(w, agent):
    package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name="Responder", policy={"approver_kind": "workspace_owners"},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    assignment = access_packages.assignment_request(actor=w.owner_b, package=package, agent=agent,
                                                    justification="incident response")
    return access_packages.assignment_decide(actor=w.owner, assignment=assignment, approve=True)


def _events(action: str, actor) -> int:
    return AuditEvent.objects.filter(action=action, actor=actor).count()


# --- install -------------------------------------------------------------------------------------------------------
def test_r3_install_is_idempotent_and_gives_complete_blueprints_with_exactly_their_permissions(world):
    first = {b.name: b for b in builtin_agents.install()}
    events = AuditEvent.objects.count()
    again = {b.name: b for b in builtin_agents.install()}
    assert {n: b.pk for n, b in again.items()} == {n: b.pk for n, b in first.items()}
    assert AuditEvent.objects.count() == events  # nothing changed, nothing recorded
    assert Blueprint.objects.filter(name__in=builtin_agents.BUILTINS).count() == 2

    hygiene_bp, ca_bp = first["AgentHygieneAgent"], first["ConditionalAccessOptimizationAgent"]
    for blueprint, permissions, period in ((hygiene_bp, HYGIENE_PERMISSIONS, 3600), (ca_bp, CA_PERMISSIONS, 86400)):
        assert blueprint.is_complete and blueprint.publisher_kind == "microsoft"
        assert set(blueprint.required_permissions.values_list("name", flat=True)) == permissions
        assert blueprint.required_skillsets == ["AgentIdentityPortal"]
        assert [t["DefaultPollPeriodSeconds"] for t in blueprint.triggers] == [period]
        assert blueprint.kind == "autonomous"
        assert builtin_agents.builtin_for(blueprint).name == blueprint.name
    assert [(i["Name"], i["DefaultValue"], i["Required"]) for i in hygiene_bp.inputs] == \
        [("ExpiringWithinDays", "30", False)]
    assert ca_bp.inputs == []
    assert AuditEvent.objects.filter(action="catalog.skillset_create").count() == 1
    assert AuditEvent.objects.filter(action="catalog.skill_resolve").count() == len(builtin_agents.SKILLS)


def test_only_a_microsoft_blueprint_gets_the_built_in_implementation(world):
    impostor = make_blueprint("AgentHygieneAgent", publisher_kind="partner", version=50)
    assert builtin_agents.builtin_for(impostor) is None
    assert builtin_agents.builtin_for(make_blueprint("SomethingElse")) is None


# --- the Agent Hygiene Agent ---------------------------------------------------------------------------------------
@pytest.fixture
def hygiene_world(world):
    """alpha: the hygiene agent and five agents with known problems; beta: one agent the run must not see."""
    w = world
    now = timezone.now()
    w.hygiene = _builtin(w, "AgentHygieneAgent", "agent-hygiene")
    w.busy = _agent(w, "busy", sponsors=[w.owner], days_old=90)
    _used(w.busy, ["User.Read.All"], 10)
    Credential.objects.filter(identity__agent=w.busy).update(expires_at=now + timedelta(days=10))
    w.idle = _agent(w, "idle", days_old=90)
    Credential.objects.filter(identity__agent=w.idle).update(expires_at=now - timedelta(days=1))
    w.orphan = _agent(w, "orphan", ("User.Read.All", "Policy.Read.All"), sponsors=[w.owner])
    Agent.objects.filter(pk=w.orphan.pk).update(orphaned_at=now)
    _used(w.orphan, ["User.Read.All"], 1)
    _used(w.orphan, ["Policy.Read.All"], 45)
    w.packaged = _agent(w, "packaged")
    _used(w.packaged, ["User.Read.All"], 0)
    w.assignment = _package(w, w.packaged)
    w.healthy = _agent(w, "healthy")
    _used(w.healthy, ["User.Read.All"], 2)
    w.elsewhere = _agent(w, "elsewhere", sponsors=[w.other], workspace=w.beta, days_old=90)
    return w


def test_hygiene_agent_reads_through_the_api_and_reports_the_exact_findings(client, hygiene_world):
    w = hygiene_world
    run, output, reads = _execute(client, w.hygiene, hygiene)
    assert reads == ["/api/v1/agent-facts/?workspace=alpha"]
    got = [(f["agent"], f["kind"], f["level"], f["action"], f["permission"], f["assignment_id"])
           for f in output.findings]
    assert got == [
        ("orphan", "orphaned", "high", "add_sponsor", "", None),
        ("idle", "agent_unused", "medium", "retire", "", None),
        ("idle", "credential_expired", "medium", "rotate", "", None),
        ("agent-hygiene", "secret_only", "low", "add_federated_credential", "", None),
        ("busy", "credential_expiring", "low", "rotate", "", None),
        ("busy", "secret_only", "low", "add_federated_credential", "", None),
        ("busy", "single_sponsor", "low", "add_sponsor", "", None),
        ("healthy", "secret_only", "low", "add_federated_credential", "", None),
        ("orphan", "permission_unused", "low", "review", "Policy.Read.All", None),
        ("orphan", "secret_only", "low", "add_federated_credential", "", None),
        ("packaged", "permission_unused", "low", "remove_grant", "SecurityIncident.ReadWrite.All", w.assignment.pk),
        ("packaged", "secret_only", "low", "add_federated_credential", "", None),
    ]
    assert {f["agent_id"] for f in output.findings} == {w.orphan.pk, w.idle.pk, w.busy.pk, w.packaged.pk,
                                                        w.healthy.pk, w.hygiene.agent.pk}
    assert output.summary == ("Checked 6 active agents in alpha (credentials ending within 30 days): 12 findings "
                              "(1 high, 2 medium, 9 low).")


def test_hygiene_agent_honours_expiring_within_days_and_validates_it(client, hygiene_world):
    w = hygiene_world
    Credential.objects.filter(identity__agent=w.healthy).update(expires_at=timezone.now() + timedelta(days=50))
    _run_, output, _reads = _execute(client, w.hygiene, hygiene, ExpiringWithinDays="60")
    assert ("healthy", "credential_expiring") in [(f["agent"], f["kind"]) for f in output.findings]
    assert "(credentials ending within 60 days)" in output.summary
    with pytest.raises(ValueError, match="ExpiringWithinDays must be a whole number of days from 1 to 365"):
        hygiene.execute(None, _run(w.hygiene.agent, ExpiringWithinDays="400"))


def _finding(output, agent, kind) -> dict:
    return next(f for f in output.findings if f["agent"] == agent and f["kind"] == kind)


def test_r23_hygiene_apply_rotates_retires_adds_a_sponsor_and_ends_an_assignment_through_the_services(
        client, hygiene_world):
    w = hygiene_world
    run, output, _reads = _execute(client, w.hygiene, hygiene)

    rotated = hygiene.apply(w.owner, run, _finding(output, "busy", "credential_expiring"), {})
    assert rotated.secret and Credential.objects.filter(identity__agent=w.busy, prefix=rotated.secret[:10]).exists()
    assert rotated.secret not in rotated.message and "shown once" in rotated.message
    assert _events("agent.credential_rotate", w.owner) == 1

    retired = hygiene.apply(w.owner, run, _finding(output, "idle", "agent_unused"), {})
    assert retired.secret == "" and Agent.objects.get(pk=w.idle.pk).status == "retired"
    assert _events("agent.retire", w.owner) == 1

    hygiene.apply(w.owner, run, _finding(output, "orphan", "orphaned"), {"user": w.owner_b})
    assert AgentUserObjectPermission.objects.filter(content_object=w.orphan, user=w.owner_b,
                                                    permission__codename="sponsor_agent").exists()
    assert Agent.objects.get(pk=w.orphan.pk).orphaned_at is None  # R7: sponsored again
    assert _events("agent.sponsor_add", w.owner) == 1 and _events("agent.orphan_cleared", w.owner) == 1

    hygiene.apply(w.owner, run, _finding(output, "packaged", "permission_unused"), {})
    assert Assignment.objects.get(pk=w.assignment.pk).status == "revoked"
    assert _events("assignment.revoke", w.owner) == 1


def test_hygiene_apply_refuses_what_it_must_not_do(client, hygiene_world):
    w = hygiene_world
    run, output, _reads = _execute(client, w.hygiene, hygiene)
    with pytest.raises(PermissionDenied):  # the service's own check: contributors do not retire agents
        hygiene.apply(w.contributor, run, _finding(output, "idle", "agent_unused"), {})
    with pytest.raises(PermissionDenied, match="not in the workspace this run checked"):
        hygiene.apply(w.other, run, {**_finding(output, "idle", "agent_unused"), "agent_id": w.elsewhere.pk}, {})
    with pytest.raises(ValidationError, match="cannot be removed"):  # R3
        hygiene.apply(w.owner, run, _finding(output, "orphan", "permission_unused"), {})
    with pytest.raises(ValidationError, match="Choose the person"):
        hygiene.apply(w.owner, run, _finding(output, "busy", "single_sponsor"), {})
    assert Agent.objects.get(pk=w.idle.pk).status == "active"


# --- the Conditional Access Optimization Agent ---------------------------------------------------------------------
@pytest.fixture
def ca_world(world):
    """alpha: the optimizer (autonomous: covered by P1), a covered reader, a high-risk agent nothing enforced
    targets, two privileged agents excluded from P2; a stale and a fresh report-only policy; beta: an uncovered
    agent the run must not see."""
    w = world
    w.optimizer = _builtin(w, "ConditionalAccessOptimizationAgent", "ca-optimizer")
    w.reader = _agent(w, "reader", attributes={"tier": "0"})
    w.risky = _agent(w, "risky")
    Agent.objects.filter(pk=w.risky.pk).update(risk_level="high")
    w.writer = _agent(w, "writer", ("User.Read.All", "SecurityIncident.ReadWrite.All"), attributes={"tier": "0"})
    w.runner = _agent(w, "admin-runner", identity_type="user_account", run_as_user=w.inherited,
                      attributes={"tier": "0"})
    w.elsewhere = _agent(w, "elsewhere", sponsors=[w.other], workspace=w.beta)
    save = conditional_access.policy_save
    w.p1 = save(actor=w.ga, data={"name": "Block risky autonomous agents", "state": "on", "grant": "block",
                                  "agent_kinds": ["autonomous"], "min_risk_level": "medium"})
    w.p2 = save(actor=w.ga, data={"name": "Block tier-0 agents", "state": "on", "grant": "block",
                                  "attribute_rules": [{"key": "tier", "op": "equals", "value": "0"}]},
                excluded_agents=[w.writer, w.runner])
    w.p3 = save(actor=w.ga, data={"name": "Trial: office hours only", "state": "report_only", "grant": "allow",
                                  "time_windows": [{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}]},
                agents=[w.risky])
    ConditionalAccessPolicy.objects.filter(pk=w.p3.pk).update(state_changed_at=timezone.now() - timedelta(days=45))
    w.p4 = save(actor=w.ga, data={"name": "Fresh trial", "state": "report_only", "grant": "block"},
                agents=[w.reader])
    return w


def test_r20_optimizer_reads_through_the_api_and_reports_the_exact_gaps(client, ca_world):
    w = ca_world
    run, output, reads = _execute(client, w.optimizer, ca_optimizer)
    assert reads == ["/api/v1/agent-facts/?workspace=alpha", "/api/v1/policies/",  # and each report-only replay
                     f"/api/v1/policies/{w.p4.pk}/replay/?days=30", f"/api/v1/policies/{w.p3.pk}/replay/?days=30"]
    got = [(f["kind"], f["level"], f["agent"], f["policy"], f["action"]) for f in output.findings]
    assert got == [
        ("privileged_excluded", "high", "admin-runner", "Block tier-0 agents", "create_policy"),
        ("agent_uncovered", "high", "risky", "", "create_policy"),
        ("high_risk_unblocked", "high", "risky", "", "create_policy"),
        ("privileged_excluded", "high", "writer", "Block tier-0 agents", "create_policy"),
        ("agent_uncovered", "medium", "", "", "create_policy"),  # one for both: one baseline covers them
        ("report_only_ready", "low", "", "Fresh trial", "enable_policy"),  # its replay blocked nothing (R29)
        ("report_only_stale", "low", "", "Trial: office hours only", "enable_policy"),
    ]
    by = {(f["kind"], f["agent"] or f["policy"] or "alpha"): f for f in output.findings}

    def suggestion(name, agent, level, description_start):
        found = by[(name, agent if isinstance(agent, str) else agent.name)]["suggested_policy"]
        assert found.pop("description").startswith(description_start)
        return found

    assert suggestion("high_risk_unblocked", w.risky, "high", "Blocks risky while its risk is high.") == {
        "name": "Block high-risk risky", "grant": "block", "state": "report_only", "agents": [w.risky.pk],
        "agent_names": ["risky"], "min_risk_level": "high"}
    assert suggestion("agent_uncovered", "alpha", "medium", "Blocks these agents when their risk reaches medium.") == {
        "name": "Baseline for 2 uncovered agents in alpha", "grant": "block", "state": "report_only",
        "agents": [w.runner.pk, w.writer.pk], "agent_names": ["admin-runner", "writer"], "min_risk_level": "medium"}
    assert by[("agent_uncovered", "alpha")]["detail"] == \
        "2 agents are targeted by no enforced conditional access policy: admin-runner, writer"
    assert suggestion("privileged_excluded", w.runner, "medium", "admin-runner runs as an administrator") == {
        "name": "Cover admin-runner excluded from Block tier-0 agents", "grant": "block", "state": "report_only",
        "agents": [w.runner.pk], "agent_names": ["admin-runner"], "min_risk_level": "medium"}
    assert by[("privileged_excluded", "writer")]["detail"] == \
        "writer holds write permissions and is excluded from the enforced policy Block tier-0 agents"
    assert by[("agent_uncovered", "risky")]["detail"] == (
        "no enforced conditional access policy targets risky (risk high); report-only, not enforced: "
        "Trial: office hours only")
    stale = by[("report_only_stale", "Trial: office hours only")]
    assert stale["suggested_policy"] == {"enable_policy": w.p3.pk} and stale["policy_id"] == w.p3.pk
    assert output.summary == ("Checked 5 active agents in alpha against 4 conditional access policies: 7 findings "
                              "(4 high, 1 medium, 2 low).")


def test_r20_an_owner_applies_a_suggestion_as_a_report_only_policy(client, ca_world):
    w = ca_world
    run, output, _reads = _execute(client, w.optimizer, ca_optimizer)
    finding = next(f for f in output.findings if f["kind"] == "high_risk_unblocked")
    applied = ca_optimizer.apply(w.owner, run, finding, {})
    assert "report-only policy 'Block high-risk risky'" in applied.message and applied.secret == ""
    policy = ConditionalAccessPolicy.objects.get(name="Block high-risk risky")
    assert (policy.state, policy.grant, policy.min_risk_level, policy.created_by) == \
        ("report_only", "block", "high", w.owner)
    assert list(policy.agents.all()) == [w.risky] and not policy.all_agents
    assert timezone.now() - policy.state_changed_at < timedelta(minutes=1)
    assert _events("policy.create", w.owner) == 1
    with pytest.raises(ValidationError, match="already exists"):
        ca_optimizer.apply(w.owner, run, finding, {})


@pytest.mark.parametrize("who", ["contributor", "other"])
def test_r20_a_contributor_or_a_stranger_may_not_apply_a_suggestion(client, ca_world, who):
    w = ca_world
    run, output, _reads = _execute(client, w.optimizer, ca_optimizer)
    finding = next(f for f in output.findings if f["kind"] == "high_risk_unblocked")
    with pytest.raises(PermissionDenied, match="only for agents you own"):
        ca_optimizer.apply(getattr(w, who), run, finding, {})
    assert not ConditionalAccessPolicy.objects.filter(name="Block high-risk risky").exists()


def test_r20_apply_refuses_agents_outside_the_run_workspace(client, ca_world):
    w = ca_world
    run, output, _reads = _execute(client, w.optimizer, ca_optimizer)
    finding = next(f for f in output.findings if f["kind"] == "high_risk_unblocked")
    tampered = {**finding, "suggested_policy": {**finding["suggested_policy"], "agents": [w.elsewhere.pk]}}
    with pytest.raises(PermissionDenied, match="agents of the workspace this run checked"):
        ca_optimizer.apply(w.ga, run, tampered, {})


def test_r20_turning_a_stale_report_only_policy_on_is_for_administrators(client, ca_world):
    w = ca_world
    run, output, _reads = _execute(client, w.optimizer, ca_optimizer)
    stale = next(f for f in output.findings if f["kind"] == "report_only_stale")
    with pytest.raises(PermissionDenied, match="Global and Security Administrators"):
        ca_optimizer.apply(w.owner, run, stale, {})
    applied = ca_optimizer.apply(w.ga, run, stale, {})
    assert applied.message == "Turned on 'Trial: office hours only': it is now enforced."
    policy = ConditionalAccessPolicy.objects.get(pk=w.p3.pk)
    assert policy.state == "on" and list(policy.agents.all()) == [w.risky]  # its targets are kept
    assert timezone.now() - policy.state_changed_at < timedelta(minutes=1)
    with pytest.raises(ValidationError, match="no longer report-only"):
        ca_optimizer.apply(w.ga, run, stale, {})


def test_r20_owners_save_only_new_report_only_policies_naming_agents_they_own(ca_world):
    w = ca_world
    save = conditional_access.policy_save
    base = {"name": "Owner's policy", "state": "report_only", "grant": "block"}
    with pytest.raises(PermissionDenied, match="Only Global and Security Administrators"):
        save(actor=w.owner, data=base, agents=[w.risky])  # without the keyword: administrators only
    with pytest.raises(PermissionDenied, match="report-only only"):
        save(actor=w.owner, data={**base, "state": "on"}, agents=[w.risky], report_only_for_owners=True)
    with pytest.raises(PermissionDenied, match="wider targets"):
        save(actor=w.owner, data={**base, "all_agents": True}, report_only_for_owners=True)
    with pytest.raises(PermissionDenied, match="you do not own elsewhere"):
        save(actor=w.owner, data=base, agents=[w.risky, w.elsewhere], report_only_for_owners=True)
    with pytest.raises(PermissionDenied, match="change conditional access policies"):
        save(actor=w.owner, data={"name": "renamed"}, policy=w.p4, agents=[w.reader], report_only_for_owners=True)
    created = save(actor=w.owner, data=base, agents=[w.risky], report_only_for_owners=True)
    assert created.state == "report_only"


def test_r20_state_changed_at_follows_the_state(ca_world):
    w = ca_world
    stale_since = ConditionalAccessPolicy.objects.get(pk=w.p3.pk).state_changed_at
    conditional_access.policy_save(actor=w.ga, data={"description": "office hours"}, policy=w.p3, agents=[w.risky])
    assert ConditionalAccessPolicy.objects.get(pk=w.p3.pk).state_changed_at == stale_since  # same state: kept
    conditional_access.policy_save(actor=w.ga, data={"state": "off"}, policy=w.p3, agents=[w.risky])
    assert ConditionalAccessPolicy.objects.get(pk=w.p3.pk).state_changed_at > stale_since


def test_r20_optimizer_rules_on_api_shaped_data():
    """The pure rules: a block policy limited to a time window does not stop a high-risk agent."""
    now = timezone.now()
    item = {"id": 1, "name": "hot", "risk_level": "high", "permissions": [], "run_as_admin": False,
            "policies": [{"id": 9, "name": "Nights", "state": "on", "grant": "block", "min_risk_level": "",
                          "excluded": False}]}
    windowed = [{"id": 9, "name": "Nights", "state": "on", "time_windows": [{"start": "22:00", "end": "06:00"}],
                 "ip_ranges": [], "state_changed_at": now.isoformat()}]
    assert [f.kind for f in ca_optimizer.findings_from([item], windowed, now)] == ["high_risk_unblocked"]
    assert ca_optimizer.findings_from([item], [{**windowed[0], "time_windows": []}], now) == []
    assert ca_optimizer.findings_from([{k: v for k, v in item.items() if k != "policies"}], [], now) == []
