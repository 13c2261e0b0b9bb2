"""Agent hygiene findings (the built-in Agent Hygiene Agent's rules): the exact findings on a seeded set, straight
from the database (``hygiene.findings``); the run through the API is in ``test_builtin_agents``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry, sponsorship
from agents.models import Agent, Credential, Sponsorship
from governance.access import services as access_packages
from governance.runs.builtin import hygiene
from governance.signin.models import AccessToken, SignIn
from portal.models import Permission
from tests.factories import accept_sponsorships, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _agent(w, name, permissions, sponsors, days_old=0, accept=True, **extra):
    """An agent of alpha set up by w.owner; its named sponsors accept unless ``accept`` is False (R30)."""
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint(f"{name}-bp".title().replace("-", ""), permissions=permissions), name, sponsors=sponsors,
        owners=[w.owner])).agent
    if accept:
        accept_sponsorships(agent)
    if days_old:
        past = timezone.now() - timedelta(days=days_old)
        Agent.objects.filter(pk=agent.pk).update(created_at=past)
        Credential.objects.filter(identity__agent=agent).update(created_at=past)
    if extra:
        Agent.objects.filter(pk=agent.pk).update(**extra)
    return agent


def _keyed(agent):
    """The agent also authenticates with a key, so it is not on a secret alone (R28): the rule under test stands
    alone."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    from agents import trust

    trust.key_credential_add(actor=None, agent=agent, jwk=ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True))
    return agent


def _used(agent, scopes, days_ago):
    at = timezone.now() - timedelta(days=days_ago)
    SignIn.objects.create(at=at, agent=agent, client_id="x", actor_kind="agent", outcome="success",
                          granted_scopes=scopes)
    # A permission's use is its token presented, not granted (docs/design.md, "Usage"): introspected then.
    AccessToken.objects.create(token_hash=f"used-{agent.pk}-{AccessToken.objects.count()}", agent=agent,
                               client_id="x", scopes=scopes, issued_at=at, expires_at=at + timedelta(hours=1),
                               last_used_at=at)


def _package(w, agent, name="Responder", permissions=("SecurityIncident.ReadWrite.All",)):
    """An active assignment of a package giving ``permissions`` to ``agent`` (requested by owner_b, approved)."""
    package = access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name=name, policy={"approver_kind": "workspace_owners"},
        permissions=Permission.objects.filter(name__in=permissions, kind="application"))
    assignment = access_packages.assignment_request(actor=w.owner_b, package=package, agent=agent,
                                                    justification="incident response")
    return access_packages.assignment_decide(actor=w.owner, assignment=assignment, approve=True)


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
    assignment = _package(world, fresh)

    found = hygiene.findings(Agent.objects.all(), now)
    assert [(f.agent, f.kind, f.level, f.action, f.permission, f.assignment_id) for f in found] == [
        ("orphan", "orphaned", "high", "add_sponsor", "", None),
        ("idle", "agent_unused", "medium", "retire", "", None),
        ("idle", "credential_expired", "medium", "rotate", "", None),
        ("busy", "credential_expiring", "low", "rotate", "", None),
        ("busy", "secret_only", "low", "add_federated_credential", "", None),
        ("busy", "single_sponsor", "low", "add_sponsor", "", None),
        ("fresh", "permission_unused", "low", "remove_grant", "SecurityIncident.ReadWrite.All", assignment.pk),
        ("fresh", "secret_only", "low", "add_federated_credential", "", None),
        ("orphan", "permission_unused", "low", "review", "Policy.Read.All", None),
        ("orphan", "secret_only", "low", "add_federated_credential", "", None),
    ]
    unused = {f.agent: f for f in found if f.kind == "permission_unused"}
    assert unused["orphan"].detail.startswith("1 automatic permission unused in 30 days (Policy.Read.All); a "
                                              "blueprint's permissions cannot be removed")
    assert unused["fresh"].detail == (f"SecurityIncident.ReadWrite.All unused in 30 days; from access package "
                                      f"assignment #{assignment.pk}")
    assert unused["fresh"].as_dict() == {
        "agent_id": fresh.pk, "agent": "fresh", "kind": "permission_unused", "level": "low",
        "detail": unused["fresh"].detail, "action": "remove_grant", "permission": "SecurityIncident.ReadWrite.All",
        "assignment_id": assignment.pk, "credential": ""}


def test_hygiene_expiring_window_follows_the_input(world):
    now = timezone.now()
    agent = _keyed(_agent(world, "soon", ("User.Read.All",), [world.owner, world.owner_b]))
    _used(agent, ["User.Read.All"], 0)
    Credential.objects.filter(identity__agent=agent).update(expires_at=now + timedelta(days=45))
    assert hygiene.findings(Agent.objects.all(), now) == []
    assert [f.kind for f in hygiene.findings(Agent.objects.all(), now, expiring_within_days=60)] == \
        ["credential_expiring"]


@pytest.mark.parametrize("value, days", [(None, 30), ("", 30), ("7", 7), (365, 365), (" 90 ", 90)])
def test_hygiene_expiring_within_days_input_is_read(value, days):
    assert hygiene.expiring_days({} if value is None else {"ExpiringWithinDays": value}) == days


@pytest.mark.parametrize("value", ["0", "366", "-3", "ten", "1.5", True, 0, 400, [30]])
def test_hygiene_expiring_within_days_input_is_validated(value):
    with pytest.raises(ValueError, match="ExpiringWithinDays must be a whole number of days from 1 to 365"):
        hygiene.expiring_days({"ExpiringWithinDays": value})


def test_hygiene_rules_work_on_api_shaped_facts_and_skip_missing_sections():
    now = timezone.now()
    item = {"id": 7, "name": "solo", "workspace": "alpha", "kind": "assistive", "publisher_kind": "microsoft",
            "identity_type": "agent_identity", "status": "active", "risk_level": "none",
            "created_at": "2020-01-01T00:00:00Z", "orphaned_at": None, "sponsors": 1}
    assert [f.kind for f in hygiene.findings_from_facts([item], now)] == ["single_sponsor"]  # no usage: not judged
    used = {**item, "sponsors": 2, "usage": {"last_used": None, "scopes_30d": []}}
    assert [f.kind for f in hygiene.findings_from_facts([used], now)] == ["agent_unused"]


def test_hygiene_runs_a_fixed_number_of_queries(world):
    def count(n):
        for i in range(n):
            _agent(world, f"fleet-{n}-{i}", ("User.Read.All",), [world.owner], days_old=90)
        with CaptureQueriesContext(connection) as queries:
            hygiene.findings(Agent.objects.filter(name__startswith=f"fleet-{n}-"))
        return len(queries)

    assert count(2) == count(12)


def test_unused_automatic_permissions_of_an_agent_are_one_finding(world):
    now = timezone.now()
    agent = _keyed(_agent(world, "wide", ("User.Read.All", "Policy.Read.All", "AuditLog.Read.All"),
                          [world.owner, world.owner_b]))
    _used(agent, ["User.Read.All"], 3)
    found = hygiene.findings(Agent.objects.all(), now)
    assert [(f.kind, f.action, f.permission) for f in found] == [
        ("permission_unused", "review", "AuditLog.Read.All, Policy.Read.All")]
    assert found[0].detail.startswith("2 automatic permissions unused in 30 days (AuditLog.Read.All, Policy.Read.All)")


def test_a_rotated_secret_living_out_its_overlap_is_not_a_finding(world):
    now = timezone.now()
    agent = _keyed(_agent(world, "rotated", ("User.Read.All",), [world.owner, world.owner_b]))
    _used(agent, ["User.Read.All"], 1)
    old = Credential.objects.get(identity__agent=agent)
    registry.credential_rotate(actor=world.owner, agent=agent)
    Credential.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=200),
                                                expires_at=now - timedelta(hours=1))
    assert hygiene.findings(Agent.objects.all(), now) == []
    Credential.objects.filter(pk=old.pk).update(replaced_by=None)  # not rotated: the same expiry is a finding
    assert [f.kind for f in hygiene.findings(Agent.objects.all(), now)] == ["credential_expired"]


# --- R30: only accepted sponsors count (docs/sponsorship.md) ----------------------------------------------------


def _sponsor_findings(agent):
    return [(f.kind, f.level, f.detail) for f in hygiene.findings(Agent.objects.filter(pk=agent.pk))
            if f.action == "add_sponsor"]


def test_r30_one_accepted_and_one_pending_sponsor_is_single_sponsor_until_the_second_accepts(world):
    agent = _keyed(_agent(world, "half", ("User.Read.All",), [world.owner, world.owner_b], accept=False))
    _used(agent, ["User.Read.All"], 0)
    pending = Sponsorship.objects.get(agent=agent, user=world.owner_b)
    assert pending.state == "pending"  # named by w.owner: asked, not yet a sponsor
    assert _sponsor_findings(agent) == [
        ("single_sponsor", "low", "one sponsor has accepted: nobody is accountable if they leave")]
    sponsorship.sponsorship_accept(actor=world.owner_b, sponsorship=pending)
    assert _sponsor_findings(agent) == []
    assert hygiene.findings(Agent.objects.all()) == []


def test_r30_declined_and_lapsed_sponsors_do_not_count(world):
    agent = _keyed(_agent(world, "fading", ("User.Read.All",), [world.owner, world.owner_b, world.contributor],
                          accept=False))
    _used(agent, ["User.Read.All"], 0)
    sponsorship.sponsorship_accept(actor=world.owner_b, sponsorship=Sponsorship.objects.get(agent=agent,
                                                                                            user=world.owner_b))
    sponsorship.sponsorship_decline(actor=world.contributor, reason="not mine", sponsorship=Sponsorship.objects.get(
        agent=agent, user=world.contributor))
    assert _sponsor_findings(agent) == []  # owner and owner_b accepted; the contributor's "no" changes nothing
    # owner_b's confirmation is overdue: lapsed even before the job marks it
    Sponsorship.objects.filter(agent=agent, user=world.owner_b).update(due_at=timezone.now() - timedelta(minutes=1))
    assert [kind for kind, _, _ in _sponsor_findings(agent)] == ["single_sponsor"]


def test_r30_an_agent_whose_named_sponsors_have_not_accepted_has_no_sponsor(world):
    agent = _keyed(_agent(world, "asked", ("User.Read.All",), [world.owner_b, world.contributor], accept=False))
    _used(agent, ["User.Read.All"], 0)
    assert agent.orphaned_at is None  # within the time to answer: the orphan sweep leaves it alone
    assert _sponsor_findings(agent) == [
        ("no_sponsor", "medium", "no sponsor has accepted: nobody is accountable for it")]
    sponsorship.sponsorship_accept(actor=world.contributor, sponsorship=Sponsorship.objects.get(
        agent=agent, user=world.contributor))
    assert [kind for kind, _, _ in _sponsor_findings(agent)] == ["single_sponsor"]


def test_r30_the_query_count_does_not_grow_with_sponsorships(world):
    def count(n):
        for i in range(n):
            agent = _agent(world, f"mixed-{n}-{i}", ("User.Read.All",), [world.owner, world.owner_b, world.contributor],
                           days_old=90, accept=False)
            if i % 2:
                sponsorship.sponsorship_accept(actor=world.owner_b, sponsorship=Sponsorship.objects.get(
                    agent=agent, user=world.owner_b))
        with CaptureQueriesContext(connection) as queries:
            found = hygiene.findings(Agent.objects.filter(name__startswith=f"mixed-{n}-"))
        assert sorted(f.kind for f in found if f.action == "add_sponsor") == \
            ["single_sponsor"] * (n - n // 2)  # the agents with one accepted sponsor; the others have two
        return len(queries)

    assert count(2) == count(12)
