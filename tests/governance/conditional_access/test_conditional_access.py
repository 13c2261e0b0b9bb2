"""R20: the conditional-access decision point — targets, conditions, block wins, report-only only records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from agents import registry
from governance.conditional_access import services as ca
from governance.conditional_access.models import ConditionalAccessPolicy
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db
MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SUNDAY_NIGHT = datetime(2026, 11, 29, 23, 30, tzinfo=UTC)


@pytest.fixture
def facts(registry_world):
    w = registry_world
    registry.agent_attribute_set(actor=w.owner, agent=w.agent, key="department", value="Security")
    w.agent.refresh_from_db()
    return ca.agent_facts(w.agent)


def policy(name, **fields) -> ConditionalAccessPolicy:
    agents = fields.pop("agents", [])
    excluded = fields.pop("excluded_agents", [])
    fields.setdefault("state", "on")
    created = ConditionalAccessPolicy(name=name, **fields)
    ca.validate_policy(created)
    created.save()
    created.agents.set(agents)
    created.excluded_agents.set(excluded)
    return created


def decide(facts, **context):
    return ca.evaluate(facts, ca.AccessContext(**context))


def test_r20_no_policy_allows(facts):
    assert decide(facts).allowed and decide(facts).verdicts == ()


def test_r20_a_block_policy_blocks_when_it_targets_and_its_conditions_hold(facts):
    policy("Block assistive", agent_kinds=["assistive"], grant="block")
    result = decide(facts)
    assert not result.allowed and [v.name for v in result.blocking] == ["Block assistive"]
    assert "targets assistive agents" in result.blocking[0].reason


def test_r20_block_wins_over_allow(facts, registry_world):
    policy("Allow this one", agents=[registry_world.agent], grant="allow")
    policy("Block Microsoft", publisher_kinds=["microsoft"], grant="block")
    result = decide(facts)
    assert not result.allowed
    assert {v.name: v.outcome for v in result.verdicts} == {"Allow this one": "allow", "Block Microsoft": "block"}


def test_r20_report_only_records_what_it_would_do_but_never_blocks(facts):
    policy("Would block", all_agents=True, grant="block", state="report_only")
    result = decide(facts)
    assert result.allowed and [v.name for v in result.report_only_blocks] == ["Would block"]


def test_r20_off_policies_are_ignored(facts):
    policy("Off", all_agents=True, grant="block", state="off")
    assert decide(facts).allowed and ca.active_policies() == []


def test_r20_exclusions_win_over_targets(facts, registry_world):
    policy("Everyone but it", all_agents=True, grant="block", excluded_agents=[registry_world.agent])
    result = decide(facts)
    assert result.allowed and result.verdicts[0].reason == "does not target this agent"


@pytest.mark.parametrize(("rule", "targeted"), [
    ({"key": "department", "op": "equals", "value": "Security"}, True),
    ({"key": "department", "op": "equals", "value": "security"}, False),
    ({"key": "department", "op": "in", "value": ["IT", "Security"]}, True),
    ({"key": "department", "op": "in", "value": "IT, Finance"}, False),
    ({"key": "department", "op": "starts_with", "value": "Sec"}, True),
    ({"key": "tier", "op": "equals", "value": "1"}, False),
])
def test_r20_custom_security_attribute_rules(facts, rule, targeted):
    policy("By attribute", attribute_rules=[rule], grant="block")
    assert decide(facts).allowed is not targeted


def test_r20_agent_user_kind_targets_agents_that_have_one(facts, registry_world):
    policy("Agent users", agent_kinds=["agent_user"], grant="block")
    assert facts.has_agent_user and not decide(facts).allowed
    w = registry_world
    runner = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "runs-as", identity_type="user_account", run_as_user=w.owner, sponsors=[w.owner],
        owners=[w.owner])).agent
    assert decide(ca.agent_facts(runner)).allowed


def test_r20_risk_condition(facts, registry_world):
    policy("Block high risk", all_agents=True, min_risk_level="medium", grant="block")
    assert decide(facts).allowed  # risk none: the condition does not hold
    type(registry_world.agent).objects.filter(pk=registry_world.agent.pk).update(risk_level="high")
    registry_world.agent.refresh_from_db()
    assert not decide(ca.agent_facts(registry_world.agent)).allowed


def test_r20_an_allow_policy_is_an_allow_list_of_networks_and_hours(facts):
    policy("Office hours from the office", all_agents=True, grant="allow", ip_ranges=["10.0.0.0/8"],
           time_windows=[{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "18:00"}])
    assert decide(facts, ip="10.1.2.3", at=MONDAY_NOON).allowed
    outside = decide(facts, ip="203.0.113.9", at=MONDAY_NOON)
    assert not outside.allowed and "outside 10.0.0.0/8" in outside.blocking[0].reason
    late = decide(facts, ip="10.1.2.3", at=SUNDAY_NIGHT)
    assert not late.allowed and "outside the policy's time windows" in late.blocking[0].reason
    assert not decide(facts, at=MONDAY_NOON).allowed  # an unknown address is not inside the range


def test_r20_time_windows_may_wrap_midnight(facts):
    policy("Nights blocked", all_agents=True, grant="block",
           time_windows=[{"days": [6], "start": "22:00", "end": "06:00"}])
    assert not decide(facts, at=SUNDAY_NIGHT).allowed
    assert decide(facts, at=MONDAY_NOON).allowed


def test_r20_malformed_policies_are_refused(db):
    for fields in ({"ip_ranges": ["not-a-network"]}, {"time_windows": [{"start": "25:00", "end": "x"}]},
                   {"attribute_rules": [{"key": "", "op": "equals"}]}, {"attribute_rules": [{"key": "a", "op": "~"}]}):
        with pytest.raises(ValidationError):
            ca.validate_policy(ConditionalAccessPolicy(name="bad", **fields))


def test_r20_the_decision_needs_a_fixed_number_of_queries(facts, django_assert_num_queries):
    for index in range(5):
        policy(f"P{index}", all_agents=True, grant="allow", state="report_only")
    with django_assert_num_queries(3):
        ca.evaluate(facts, ca.AccessContext(ip="10.0.0.1"))


def test_r20_policies_are_managed_by_global_and_security_administrators_and_audited(registry_world, client):
    w = registry_world
    data = {"name": "Partners report-only", "state": "report_only", "grant": "block", "publisher_kinds": ["partner"],
            "time_windows": "5,6 00:00-23:59", "ip_ranges": "10.0.0.0/8"}
    client.force_login(w.owner)
    assert client.post("/governance/policies/new/", data).status_code == 403
    client.force_login(w.inherited)  # Security Administrator
    assert client.post("/governance/policies/new/", data).status_code == 302
    created = ConditionalAccessPolicy.objects.get(name="Partners report-only")
    assert created.time_windows == [{"days": [5, 6], "start": "00:00", "end": "23:59"}]
    assert created.created_by == w.inherited
    from portal.models import AuditEvent

    assert AuditEvent.objects.filter(action="policy.create", target_id=str(created.pk)).exists()
    bad = client.post("/governance/policies/new/", {**data, "name": "Bad", "ip_ranges": "nonsense"})
    assert "is not an IP range" in bad.content.decode() and not ConditionalAccessPolicy.objects.filter(
        name="Bad").exists()
    empty = client.post("/governance/policies/new/", {"name": "Nobody", "state": "on", "grant": "block"})
    assert "Choose whom the policy targets" in empty.content.decode()


def test_r20_what_if_shows_the_same_decision_as_the_decision_point(registry_world, client, facts):
    policy("Block assistive", agent_kinds=["assistive"], grant="block")
    policy("Report partners", publisher_kinds=["microsoft"], grant="block", state="report_only")
    client.force_login(registry_world.owner)
    body = client.get("/governance/policies/what-if/?agent=matrix-agent&ip=10.0.0.1").content.decode()
    direct = ca.evaluate(facts, ca.AccessContext(ip="10.0.0.1"))
    assert not direct.allowed and "<strong>blocked</strong> by Block assistive" in body
    assert "report-only would block: Report partners" in body


def test_r20_a_kept_evaluation_answers_only_for_the_same_inputs(facts, registry_world):
    """The token endpoint's evaluations of the cached policies are kept per load (``evaluate_cached``): they must
    agree with ``evaluate`` whatever changes between two requests in the same minute — the agent's risk, the
    address, the minute — and a saved policy is in force at the next decision."""
    policy("Office hours from the office", all_agents=True, grant="allow", ip_ranges=["10.0.0.0/8"],
           time_windows=[{"days": [0, 1, 2, 3, 4], "start": "08:00", "end": "12:01"}])
    policy("Block high risk", all_agents=True, min_risk_level="medium", grant="block")
    ca.policies_changed()
    policies = ca.cached_active_policies()

    def both(facts, **context):
        kept = ca.evaluate_cached(facts, ca.AccessContext(**context), policies)
        assert kept == ca.evaluate(facts, ca.AccessContext(**context), policies)
        return kept

    assert both(facts, ip="10.1.2.3", at=MONDAY_NOON).allowed
    assert both(facts, ip="10.1.2.3", at=MONDAY_NOON.replace(second=59)).allowed  # the same minute: kept
    assert not both(facts, ip="203.0.113.9", at=MONDAY_NOON).allowed
    assert not both(facts, ip="10.1.2.3", at=MONDAY_NOON.replace(minute=1)).allowed  # the window's end
    type(registry_world.agent).objects.filter(pk=registry_world.agent.pk).update(risk_level="high")
    registry_world.agent.refresh_from_db()
    risky = ca.agent_facts(registry_world.agent)
    assert not both(risky, ip="10.1.2.3", at=MONDAY_NOON).allowed  # same minute and address, new risk
    policy("Block the office network", all_agents=True, grant="block", ip_ranges=["10.1.0.0/16"])
    ca.policies_changed()
    policies = ca.cached_active_policies()
    assert not both(facts, ip="10.1.2.3", at=MONDAY_NOON).allowed  # the saved policy, at the next decision
