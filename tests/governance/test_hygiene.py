"""Agent hygiene findings (groundwork for the built-in Agent Hygiene Agent): the exact findings on a seeded set."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents.models import Agent, Credential
from governance import hygiene
from governance.models import SignIn
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _agent(w, name, permissions, sponsors, days_old=0, **extra):
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint(f"{name}-bp".title().replace("-", ""), permissions=permissions), name, sponsors=sponsors,
        owners=[w.owner])).agent
    if days_old:
        past = timezone.now() - timedelta(days=days_old)
        Agent.objects.filter(pk=agent.pk).update(created_at=past)
        Credential.objects.filter(identity__agent=agent).update(created_at=past)
    if extra:
        Agent.objects.filter(pk=agent.pk).update(**extra)
    return agent


def _used(agent, scopes, days_ago):
    SignIn.objects.create(at=timezone.now() - timedelta(days=days_ago), agent=agent, client_id="x",
                          actor_kind="agent", outcome="success", granted_scopes=scopes)


def test_hygiene_findings_are_exact_and_ranked_by_risk(world):
    now = timezone.now()
    busy = _agent(world, "busy", ("User.Read.All",), [world.owner], days_old=90)
    _used(busy, ["User.Read.All"], 10)
    Credential.objects.filter(identity__agent=busy).update(expires_at=now + timedelta(days=10))
    idle = _agent(world, "idle", ("User.Read.All",), [world.owner, world.owner_b], days_old=90)
    Credential.objects.filter(identity__agent=idle).update(expires_at=now - timedelta(days=1))
    orphan = _agent(world, "orphan", ("User.Read.All", "Policy.Read.All"), [world.owner], orphaned_at=now)
    _used(orphan, ["User.Read.All"], 1)
    _used(orphan, ["Policy.Read.All"], 45)  # too long ago to count as use
    fresh = _agent(world, "fresh", ("User.Read.All",), [world.owner, world.owner_b])
    _used(fresh, ["User.Read.All"], 0)

    got = [(f.agent, f.kind, f.level, f.action) for f in hygiene.findings(Agent.objects.all(), now)]
    assert got == [
        ("orphan", "orphaned", "high", "add_sponsor"),
        ("idle", "agent_unused", "medium", "retire"),
        ("idle", "credential_expired", "medium", "rotate"),
        ("busy", "credential_expiring", "low", "rotate"),
        ("busy", "single_sponsor", "low", "add_sponsor"),
        ("orphan", "permission_unused", "low", "remove_grant"),
    ]
    unused = [f for f in hygiene.findings(Agent.objects.all(), now) if f.kind == "permission_unused"]
    assert unused[0].detail == "Policy.Read.All not used in 30 days"


def test_hygiene_runs_a_fixed_number_of_queries(world):
    def count(n):
        for i in range(n):
            _agent(world, f"fleet-{n}-{i}", ("User.Read.All",), [world.owner], days_old=90)
        with CaptureQueriesContext(connection) as queries:
            hygiene.findings(Agent.objects.filter(name__startswith=f"fleet-{n}-"))
        return len(queries)

    assert count(2) == count(12)
