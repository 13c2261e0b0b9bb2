"""The Conditional Access Optimization Agent proposes turning a report-only policy on only when its replay would have
blocked nothing legitimate (docs/policy-replay.md, "The optimizer"): it reads the replay through the API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.risk.models import RiskDetection
from governance.runs.builtin import optimizer as ca_optimizer
from governance.signin.models import SignIn
from tests.governance.runs.test_builtin_agents import _agent, _builtin, _execute

pytestmark = pytest.mark.django_db


@pytest.fixture
def trial(world):
    w = world
    w.optimizer = _builtin(w, "ConditionalAccessOptimizationAgent", "ca-optimizer")
    w.reader = _agent(w, "reader")
    w.policy = conditional_access.policy_save(actor=w.ga, data={
        "name": "Trial: outside the office", "state": "report_only", "grant": "block", "ip_ranges": ["192.0.2.0/24"]},
        agents=[w.reader])
    ConditionalAccessPolicy.objects.filter(pk=w.policy.pk).update(state_changed_at=timezone.now() - timedelta(days=40))
    return w


def _sign_in(agent, ip: str, outcome: str = "success") -> None:
    SignIn.objects.create(at=timezone.now() - timedelta(days=3), agent=agent, client_id="c", actor_kind="agent",
                          ip=ip, grant_type="client_credentials", outcome=outcome, credential_type="secret")


def _about_trial(output) -> list[dict]:
    return [f for f in output.findings if f["policy"] == "Trial: outside the office"]


def test_r29_replay_optimizer_does_not_propose_a_policy_that_would_block_legitimate_sign_ins(client, trial):
    w = trial
    _sign_in(w.reader, "192.0.2.10")  # a success of an active agent at no risk, from the range: legitimate
    _sign_in(w.reader, "10.0.0.1")
    run, output, reads = _execute(client, w.optimizer, ca_optimizer)
    assert f"/api/v1/policies/{w.policy.pk}/replay/?days=30" in reads
    [finding] = _about_trial(output)
    assert finding["kind"] == "report_only_stale" and finding["action"] == "review"
    assert finding["suggested_policy"] == {}
    assert "would have blocked 1 request of 1 agent, 1 of them legitimate" in finding["detail"]


def test_r29_replay_optimizer_proposes_a_policy_that_would_block_nothing_legitimate(client, trial):
    w = trial
    risky = _agent(w, "risky")
    conditional_access.policy_save(actor=w.ga, data={"state": "report_only"}, policy=w.policy,
                                   agents=[w.reader, risky])
    ConditionalAccessPolicy.objects.filter(pk=w.policy.pk).update(state_changed_at=timezone.now() - timedelta(days=2))
    RiskDetection.objects.create(agent=risky, kind="new_scope", level="medium", key="k")
    _sign_in(risky, "192.0.2.10")  # blocked, but of an agent with an open risk detection
    _sign_in(w.reader, "192.0.2.11", outcome="blocked")  # already refused: not legitimate
    _sign_in(w.reader, "10.0.0.1")  # legitimate, and the policy would let it through
    run, output, _reads = _execute(client, w.optimizer, ca_optimizer)
    [finding] = _about_trial(output)
    assert finding["kind"] == "report_only_ready" and finding["action"] == "enable_policy"
    assert finding["suggested_policy"] == {"enable_policy": w.policy.pk}
    assert "would have blocked nothing legitimate" in finding["detail"]
    assert "would have blocked 2 requests of 2 agents" in finding["detail"]
    applied = ca_optimizer.apply(w.ga, run, finding, {})
    assert "Turned on" in applied.message or "second administrator" in applied.message
