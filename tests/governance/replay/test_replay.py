"""Policy replay (docs/design.md, R29; docs/policy-replay.md): the recorded sign-ins and run starts replayed through
the decision function that issued them, grouped in SQL and evaluated once per group."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.replay import replay
from governance.risk.models import RiskDetection
from governance.runs import services as runs
from governance.signin import partitions, tokens
from governance.signin.models import SignIn
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db

TICKETS = "https://tickets.example.test"


def _token(client, agent, secret_cache: dict, ip: str, **data):
    if agent.pk not in secret_cache:
        credential, secret = registry.credential_rotate(actor=None, agent=agent)
        secret_cache[agent.pk] = (credential.identity.client_id, secret)
    client_id, secret = secret_cache[agent.pk]
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token/", {"grant_type": "client_credentials", **data},
                       HTTP_AUTHORIZATION=f"Basic {basic}", REMOTE_ADDR=ip)


@pytest.fixture
def fleet(registry_world, settings):
    """Three agents of alpha, a second resource, and a set of tickets for one of them."""
    w = registry_world
    settings.TRUSTED_PROXIES = []
    tokens.resource_server_create(actor=None, name="Tickets", identifier=TICKETS, scopes="User.Read.All")
    w.agents = [w.agent] + [registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, f"replay-agent-{i}", sponsors=[w.owner], owners=[w.owner_b])).agent for i in range(2)]
    return w


def _record(client, w, requests) -> None:
    secrets: dict = {}
    for agent, ip, resource in requests:
        data = {"resource": resource} if resource else {}
        _token(client, agent, secrets, ip, **data)


def _report_only_blocks(policy) -> set[int]:
    """The sign-ins whose recorded verdict of ``policy`` (report-only at the time) was "would block"."""
    return {row.pk for row in SignIn.objects.exclude(grant_type="run")
            if any(v["id"] == policy.pk and v["outcome"] == "block" for v in row.policies)}


def _replayed(policy, **kwargs) -> set[int]:
    return {row.pk for row in replay.blocked_sign_ins(policy, limit=None, **kwargs)}


REQUESTS_AT = "10.1.2.3", "10.1.9.9", "10.2.0.1", "192.0.2.7", "2001:db8::1"


def test_r29_replay_equals_real_issuance_for_every_recorded_sign_in(client, fleet, fresh_rate_window):
    w = fleet
    now = timezone.now().astimezone(UTC)
    # A window around now and one that is not: the grouping by time-window stretches must keep them apart.
    around = {"days": list(range(7)), "start": f"{(now - timedelta(hours=1)):%H:00}",
              "end": f"{(now + timedelta(hours=2)):%H:00}"}
    watched = conditional_access.policy_save(actor=w.ga, data={
        "name": "Office network for tickets", "state": "report_only", "grant": "block", "all_agents": True,
        "ip_ranges": ["10.1.0.0/16", "2001:db8::/32"], "resources": [TICKETS]})
    allow = conditional_access.policy_save(actor=w.ga, data={
        "name": "Only in hours", "state": "report_only", "grant": "allow", "agent_kinds": ["autonomous", "assistive"],
        "time_windows": [around], "credential_types": ["secret"], "ip_ranges": ["10.2.0.0/16"]},
        excluded_agents=[w.agents[2]])
    named = conditional_access.policy_save(actor=w.ga, data={
        "name": "Named one", "state": "report_only", "grant": "block", "min_risk_level": "none"},
        agents=[w.agents[1]])
    # An enforced policy blocks some requests: blocked sign-ins recorded the report-only verdicts too.
    conditional_access.policy_save(actor=w.ga, data={
        "name": "Enforced", "state": "on", "grant": "block", "ip_ranges": ["192.0.2.0/24"]}, agents=[w.agents[0]])
    requests = [(agent, ip, resource) for agent in w.agents for ip in REQUESTS_AT for resource in ("", TICKETS)]
    _record(client, w, requests)
    rows = SignIn.objects.exclude(grant_type="run")
    assert rows.count() == len(requests) and rows.filter(outcome="blocked").exists()
    for policy in (watched, allow, named):
        expected = _report_only_blocks(policy)
        assert expected, policy.name
        assert _replayed(policy) == expected, policy.name
        result = replay.policy_replay(policy, days=7)
        assert result.sign_ins == len(expected)
        assert result.sign_ins_replayed == (len(REQUESTS_AT) * 2 if policy == named else len(requests))
        # Grouped to fewer evaluations than rows; SQLite has no address-range operator, so a policy with ranges is
        # grouped there by each address (here, one group per request).
        grouped = policy != allow and (connection.vendor == "postgresql" or not policy.ip_ranges)
        assert result.groups_evaluated < len(requests) if grouped else result.groups_evaluated <= len(requests)
        assert {a.name for a in result.by_agent} == {r.agent.name for r in SignIn.objects.filter(pk__in=expected)}


def test_r29_replay_counts_the_last_7_or_30_days(client, fleet, fresh_rate_window, postgres):
    w = fleet
    policy = conditional_access.policy_save(actor=w.ga, data={
        "name": "Every agent", "state": "report_only", "grant": "block", "all_agents": True})
    _record(client, w, [(w.agents[0], "10.1.2.3", "")] * 3 + [(w.agents[1], "10.1.2.3", "")] * 2)
    old = list(SignIn.objects.filter(agent=w.agents[1]).values_list("pk", flat=True))
    today = timezone.now().astimezone(UTC).date()
    partitions.create_days(today - timedelta(days=12), today)
    SignIn.objects.filter(pk__in=old).update(at=timezone.now() - timedelta(days=10))
    week, month = replay.policy_replay(policy, days=7), replay.policy_replay(policy, days=30)
    assert (week.sign_ins, week.agents) == (3, 1)
    assert (month.sign_ins, month.agents) == (5, 2)
    assert len(week.by_day) == 7 and len(month.by_day) == 30
    ten_days_ago = (timezone.now() - timedelta(days=10)).astimezone(UTC).date()
    assert [d.sign_ins for d in month.by_day if d.day == ten_days_ago] == [2]
    assert _replayed(policy, days=30, day=ten_days_ago) == set(old)
    assert _replayed(policy, days=7, day=ten_days_ago) == set()


def test_r29_replay_of_an_edited_unsaved_policy(client, fleet, fresh_rate_window):
    w = fleet
    saved = conditional_access.policy_save(actor=w.ga, data={
        "name": "Named", "state": "report_only", "grant": "block"}, agents=[w.agents[0]])
    _record(client, w, [(agent, "10.1.2.3", "") for agent in w.agents])
    assert replay.policy_replay(saved).sign_ins == 1
    # The form's values, not saved: every agent but one, from anywhere in 10.0.0.0/8.
    edited = ConditionalAccessPolicy(pk=saved.pk, name="Named", state="report_only", grant="block", all_agents=True,
                                     ip_ranges=["10.0.0.0/8"])
    result = replay.policy_replay(edited, agents=[], excluded_agents=[w.agents[2]])
    assert (result.sign_ins, result.agents) == (2, 2)
    assert _replayed(edited, agents=[], excluded_agents=[w.agents[2]]) == set(
        SignIn.objects.filter(agent__in=w.agents[:2]).values_list("pk", flat=True))
    saved.refresh_from_db()
    assert not saved.all_agents and list(saved.agents.all()) == [w.agents[0]]  # nothing saved
    # A new policy, off in the form: replayed as it would act once on.
    new = ConditionalAccessPolicy(name="New", grant="block", state="off")
    assert replay.policy_replay(new, agents=[w.agents[2]], excluded_agents=[]).sign_ins == 1


def test_r29_replay_includes_run_starts(fleet, django_capture_on_commit_callbacks):
    w = fleet
    policy = conditional_access.policy_save(actor=w.ga, data={
        "name": "Runs of one", "state": "report_only", "grant": "block", "resources": []}, agents=[w.agent])
    session = runs.session_open(actor=w.owner, agent=w.agent)
    with django_capture_on_commit_callbacks(execute=False):
        started = runs.run_start(actor=w.owner, session=session)
    assert any(v["id"] == policy.pk and v["outcome"] == "block" for v in started.policies)
    result = replay.policy_replay(policy)
    assert (result.run_starts, result.run_starts_replayed, result.sign_ins) == (1, 1, 0)
    assert result.by_agent[0].run_starts == 1 and result.legitimate == 1
    # An agent with an open risk detection: its run start is no longer a legitimate one.
    RiskDetection.objects.create(agent=w.agent, kind="new_scope", level="low", key="x")
    assert replay.policy_replay(policy).legitimate == 0


def test_r29_replay_runs_a_fixed_number_of_queries(client, fleet, fresh_rate_window, django_assert_max_num_queries):
    w = fleet
    policy = conditional_access.policy_save(actor=w.ga, data={
        "name": "Every agent", "state": "report_only", "grant": "block", "all_agents": True,
        "attribute_rules": [{"key": "team", "op": "equals", "value": "x"}], "agent_kinds": ["agent_user"]})
    _record(client, w, [(agent, ip, "") for agent in w.agents for ip in REQUESTS_AT])
    policy = ConditionalAccessPolicy.objects.get(pk=policy.pk)
    with django_assert_max_num_queries(8):
        assert replay.policy_replay(policy).sign_ins == 15


def test_r29_replay_window_starts_at_a_utc_midnight():
    since, until = replay.window(7, datetime(2026, 3, 10, 15, 30, tzinfo=UTC))
    assert since == datetime(2026, 3, 4, tzinfo=UTC) and until.hour == 15
