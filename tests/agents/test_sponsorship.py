"""R30 (docs/sponsorship.md): sponsorship is accepted, not imposed; confirmed again on a schedule; transfers wait for
the new sponsor and escalate to the owners."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import policy, registry, selectors, sponsorship
from agents.models import Agent, AgentUserObjectPermission, Sponsorship
from governance.access import lifecycle
from portal import jobs
from portal.models import AuditEvent, JobRun, Notification
from portal.schedules import JOB_SCHEDULES
from tests.factories import UserFactory, agent_spec

pytestmark = pytest.mark.django_db


def _of(agent, user) -> Sponsorship:
    return Sponsorship.objects.get(agent=agent, user=user, state__in=("pending", "accepted", "expired"))


def _events(action: str) -> int:
    return AuditEvent.objects.filter(action=action).count()


@pytest.fixture
def asked(registry_world):
    """The agent (sponsored by owner, who named themself) with newcomer asked to sponsor it too."""
    w = registry_world
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=w.newcomer, role=policy.SPONSOR_AGENT)
    w.asked = _of(w.agent, w.newcomer)
    return w


@pytest.fixture
def unsponsored(registry_world):
    """An agent whose only named sponsor (the contributor) was named by the owner and has not answered."""
    w = registry_world
    w.lonely = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "lonely-agent", sponsors=[w.contributor], owners=[w.owner_b])).agent
    w.lonely_request = _of(w.lonely, w.contributor)
    return w


def test_r30_naming_yourself_is_accepted_at_once(registry_world, settings):
    w = registry_world
    row = _of(w.agent, w.owner)
    assert row.state == "accepted" and row.attested_at and row.requested_by == w.owner
    expected = row.attested_at + timedelta(days=settings.SPONSOR_ATTESTATION_DAYS)
    assert abs((row.due_at - expected).total_seconds()) < 1
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {w.agent.pk: {w.owner.pk}}
    assert not Notification.objects.filter(recipient=w.owner, subject__contains="asked to sponsor").exists()


def test_r30_naming_someone_else_is_pending_and_asks_them(asked):
    w = asked
    assert w.asked.state == "pending" and w.asked.requested_by == w.owner and w.asked.due_at is None
    note = Notification.objects.get(recipient=w.newcomer, subject__contains="asked to sponsor")
    assert note.link == f"/agents/sponsorships/{w.asked.pk}/"
    assert policy.is_agent_sponsor(w.newcomer, w.agent)  # named: they can see the agent to decide
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {w.agent.pk: {w.owner.pk}}
    event = AuditEvent.objects.filter(action="agent.sponsor_add").latest("id")
    assert event.after == {"user": "newcomer", "sponsorship": "pending"}


def test_r30_until_one_sponsor_accepts_the_agent_is_unsponsored(unsponsored, client):
    w = unsponsored
    assert w.lonely_request.state == "pending"
    assert selectors.accepted_sponsor_ids([w.lonely.pk]) == {}
    client.force_login(w.owner)
    page = client.get(f"/agents/{w.lonely.pk}/").content.decode()
    assert "data-unsponsored" in page and "waiting for an answer" in page
    listing = client.get("/agents/").content.decode()
    row = listing.split('data-agent="lonely-agent"')[1].split("</tr>")[0]
    assert "unsponsored" in row
    matrix_row = listing.split('data-agent="matrix-agent"')[1].split("</tr>")[0]
    assert "unsponsored" not in matrix_row
    sponsorship.sponsorship_accept(actor=w.contributor, sponsorship=w.lonely_request)
    assert "data-unsponsored" not in client.get(f"/agents/{w.lonely.pk}/").content.decode()


def test_r30_accepting_makes_a_sponsor_with_one_audit_event(asked, settings):
    w = asked
    before = AuditEvent.objects.count()
    accepted = sponsorship.sponsorship_accept(actor=w.newcomer, sponsorship=w.asked)
    assert accepted.state == "accepted" and accepted.decided_at and accepted.attested_at
    assert accepted.due_at > timezone.now() + timedelta(days=settings.SPONSOR_ATTESTATION_DAYS - 1)
    assert AuditEvent.objects.count() == before + 1 and _events("sponsorship.accept") == 1
    assert selectors.accepted_sponsor_ids([w.agent.pk])[w.agent.pk] == {w.owner.pk, w.newcomer.pk}
    with pytest.raises(ValidationError):  # answered already
        sponsorship.sponsorship_accept(actor=w.newcomer, sponsorship=w.asked)


def test_r30_declining_unnames_the_person_and_tells_the_owners(asked):
    w = asked
    declined = sponsorship.sponsorship_decline(actor=w.newcomer, sponsorship=w.asked, reason="not my team")
    assert declined.state == "declined" and _events("sponsorship.decline") == 1
    assert not AgentUserObjectPermission.objects.filter(content_object=w.agent, user=w.newcomer).exists()
    told = Notification.objects.filter(subject__contains="declined to sponsor").values_list("recipient__username",
                                                                                              flat=True)
    assert set(told) == {"owner", "owner_b"}  # the one who asked (owner) and the agent's owner (owner_b)
    assert "not my team" in Notification.objects.filter(recipient=w.owner_b).latest("id").body
    # Named again later: a new request, the declined one stays as history.
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=w.newcomer, role=policy.SPONSOR_AGENT)
    assert Sponsorship.objects.filter(agent=w.agent, user=w.newcomer).count() == 2


def test_r30_only_the_named_person_can_answer(asked, client):
    w = asked
    for other in (w.owner, w.owner_b, w.ga):
        with pytest.raises(PermissionDenied):
            sponsorship.sponsorship_accept(actor=other, sponsorship=w.asked)
        with pytest.raises(PermissionDenied):
            sponsorship.sponsorship_decline(actor=other, sponsorship=w.asked)
        client.force_login(other)
        assert client.get(f"/agents/sponsorships/{w.asked.pk}/").status_code == 404
        assert client.post(f"/agents/sponsorships/{w.asked.pk}/", {"answer": "accept"}).status_code == 404
    assert _of(w.agent, w.newcomer).state == "pending" and _events("sponsorship.accept") == 0


def test_r30_the_named_person_answers_on_the_page(asked, client):
    w = asked
    client.force_login(w.newcomer)
    mine = client.get("/agents/sponsorships/").content.decode()
    assert f"/agents/sponsorships/{w.asked.pk}/" in mine and "matrix-agent" in mine
    assert client.get(f"/agents/sponsorships/{w.asked.pk}/").status_code == 200
    response = client.post(f"/agents/sponsorships/{w.asked.pk}/", {"answer": "accept"})
    assert response.status_code == 302 and _of(w.agent, w.newcomer).state == "accepted"
    response = client.post(f"/agents/sponsorships/{w.asked.pk}/", {"answer": "nonsense"})
    assert response.status_code == 302 and _of(w.agent, w.newcomer).state == "accepted"


def test_r30_unsponsored_past_the_grace_is_flagged_then_disabled(unsponsored, settings):
    w = unsponsored
    assert w.lonely.pk in set(selectors.agents_sponsored_or_waiting().values_list("pk", flat=True))
    lifecycle.sweep_orphans()
    assert Agent.objects.get(pk=w.lonely.pk).orphaned_at is None  # still within the time to answer
    long_ago = timezone.now() - timedelta(days=settings.ORPHAN_GRACE_DAYS + 1)
    Sponsorship.objects.filter(pk=w.lonely_request.pk).update(requested_at=long_ago)
    counts = lifecycle.sweep_orphans()
    lonely = Agent.objects.get(pk=w.lonely.pk)
    assert counts["orphaned"] == 1 and lonely.orphaned_at is not None and lonely.status == "active"
    assert Agent.objects.get(pk=w.agent.pk).orphaned_at is None  # accepted sponsor: left alone
    Agent.objects.filter(pk=lonely.pk).update(orphaned_at=long_ago)
    assert lifecycle.sweep_orphans()["disabled"] == 1
    assert Agent.objects.get(pk=lonely.pk).status == "disabled"
    assert Agent.objects.get(pk=w.agent.pk).status == "active"


def test_r30_accepting_clears_the_orphan_flag(unsponsored, settings):
    w = unsponsored
    long_ago = timezone.now() - timedelta(days=settings.ORPHAN_GRACE_DAYS + 1)
    Sponsorship.objects.filter(pk=w.lonely_request.pk).update(requested_at=long_ago)
    lifecycle.sweep_orphans()
    sponsorship.sponsorship_accept(actor=w.contributor, sponsorship=w.lonely_request)
    assert lifecycle.sweep_orphans()["cleared"] == 1
    assert Agent.objects.get(pk=w.lonely.pk).orphaned_at is None


def test_r30_a_sponsorship_not_confirmed_in_time_lapses(registry_world, settings):
    w = registry_world
    row = _of(w.agent, w.owner)
    Sponsorship.objects.filter(pk=row.pk).update(due_at=timezone.now() + timedelta(days=3))
    first = sponsorship.attest_sponsorships()
    assert first["reminded"] == 1 and first["lapsed"] == 0
    assert Notification.objects.filter(recipient=w.owner, subject__contains="Confirm you still sponsor").count() == 1
    assert sponsorship.attest_sponsorships()["reminded"] == 0  # reminded once per due date
    Sponsorship.objects.filter(pk=row.pk).update(due_at=timezone.now() - timedelta(minutes=1))
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {}  # overdue counts as lapsed before the job runs
    assert sponsorship.attest_sponsorships()["lapsed"] == 1
    assert _of(w.agent, w.owner).state == "expired" and _events("sponsorship.expire") == 1
    assert sponsorship.attest_sponsorships()["lapsed"] == 0
    counts = lifecycle.sweep_orphans()  # nobody else accepted: the agent is flagged orphaned
    assert counts["orphaned"] == 1
    confirmed = sponsorship.sponsorship_attest(actor=w.owner, sponsorship=row)
    assert confirmed.state == "accepted" and confirmed.due_at > timezone.now() + timedelta(days=170)
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {w.agent.pk: {w.owner.pk}}
    assert _events("sponsorship.attest") == 1
    with pytest.raises(PermissionDenied):
        sponsorship.sponsorship_attest(actor=w.owner_b, sponsorship=row)


def test_r30_a_transfer_waits_for_acceptance_then_escalates(registry_world, settings):
    w = registry_world
    current = _of(w.agent, w.owner)
    new = sponsorship.sponsorship_transfer(actor=w.owner, sponsorship=current, to_user=w.newcomer)
    assert new.state == "pending" and new.replaces_id == current.pk
    assert _of(w.agent, w.owner).state == "accepted"  # the old sponsor stays until the new one accepts
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {w.agent.pk: {w.owner.pk}}
    assert sponsorship.attest_sponsorships()["escalated"] == 0  # not late yet
    Sponsorship.objects.filter(pk=new.pk).update(
        requested_at=timezone.now() - timedelta(days=settings.SPONSOR_TRANSFER_DAYS + 1))
    assert sponsorship.attest_sponsorships()["escalated"] == 1
    assert Notification.objects.filter(recipient=w.owner_b, subject__contains="has not accepted").count() == 1
    assert sponsorship.attest_sponsorships()["escalated"] == 0  # escalated once
    sponsorship.sponsorship_accept(actor=w.newcomer, sponsorship=new)
    assert Sponsorship.objects.get(pk=current.pk).state == "superseded"
    assert not AgentUserObjectPermission.objects.filter(content_object=w.agent, user=w.owner,
                                                        permission__codename=policy.SPONSOR_AGENT).exists()
    assert selectors.accepted_sponsor_ids([w.agent.pk]) == {w.agent.pk: {w.newcomer.pk}}


def test_r30_only_the_sponsor_or_the_agent_managers_hand_over(registry_world):
    w = registry_world
    current = _of(w.agent, w.owner)
    with pytest.raises(PermissionDenied):
        sponsorship.sponsorship_transfer(actor=w.contributor, sponsorship=current, to_user=w.newcomer)
    with pytest.raises(ValidationError):
        sponsorship.sponsorship_transfer(actor=w.owner, sponsorship=current, to_user=w.owner)  # named already
    assert _events("sponsorship.transfer") == 0


def test_r30_the_job_is_registered_scheduled_and_safe_to_run_twice(registry_world):
    w = registry_world
    Sponsorship.objects.filter(agent=w.agent).update(due_at=timezone.now() - timedelta(days=1))
    first = jobs.job_execute("attest_sponsorships")
    second = jobs.job_execute("attest_sponsorships")
    assert first.status == second.status == "succeeded"
    assert first.counts["lapsed"] == 1 and second.counts["lapsed"] == 0
    assert JobRun.objects.filter(job="attest_sponsorships").count() == 2
    assert "attest_sponsorships" in JOB_SCHEDULES


def test_r30_a_bulk_file_asks_each_sponsor_once(registry_world):
    w = registry_world
    specs = [agent_spec(w.blueprint, f"bulk-{i}", sponsors=[w.contributor, w.owner], owners=[w.owner_b])
             for i in range(3)]
    made = registry.agents_provision(actor=None, workspace=w.alpha, specs=specs)
    rows = Sponsorship.objects.filter(agent__in=[p.agent for p in made])
    assert rows.count() == 6 and set(rows.values_list("state", flat=True)) == {"pending"}
    assert Notification.objects.filter(recipient=w.contributor, subject__contains="asked to sponsor 3").count() == 1


def test_r30_a_bulk_file_naming_a_different_sponsor_per_row_asks_each_in_constant_queries(registry_world):
    """Each person named for one agent is asked about that agent (with its sponsorship's link); the whole file's
    notifications are one insert, so the queries do not grow with the number of people named."""
    w = registry_world

    def provision(prefix: str, n: int):
        people = [UserFactory() for _ in range(n)]
        specs = [agent_spec(w.blueprint, f"{prefix}-{i}", sponsors=[person], owners=[w.owner_b])
                 for i, person in enumerate(people)]
        with CaptureQueriesContext(connection) as ctx:
            made = registry.agents_provision(actor=None, workspace=w.alpha, specs=specs)
        return people, made, len(ctx.captured_queries)

    provision("warm-up", 1)
    _people, _made, few = provision("few", 2)
    people, made, many = provision("many", 8)
    assert few == many
    for person, provisioned in zip(people, made, strict=True):
        note = Notification.objects.get(recipient=person)
        assert note.subject == f"You are asked to sponsor {provisioned.agent.name}"
        assert note.link == sponsorship.link(_of(provisioned.agent, person))


def test_r30_the_manager_replacing_a_deactivated_sponsor_is_asked(registry_world):
    from portal import directory

    w = registry_world
    boss = UserFactory(username="boss")
    leaver = UserFactory(username="leaver", manager=boss)
    registry.agent_person_add(actor=w.owner, agent=w.agent, user=leaver, role=policy.SPONSOR_AGENT)
    sponsorship.sponsorship_accept(actor=leaver, sponsorship=_of(w.agent, leaver))
    directory.user_deactivate(actor=w.ga, user=leaver)
    lifecycle.sweep_orphans()
    assert _of(w.agent, boss).state == "pending"
    assert Sponsorship.objects.get(agent=w.agent, user=leaver).state == "removed"
    assert "as their manager" in Notification.objects.get(recipient=boss).body


def test_r30_existing_sponsors_become_accepted(registry_world):
    w = registry_world
    Sponsorship.objects.all().delete()
    migration = importlib.import_module("agents.migrations.0012_sponsorship_existing_accepted")
    migration.existing_sponsors_accepted(django_apps, None)
    row = Sponsorship.objects.get(agent=w.agent)
    assert row.user == w.owner and row.state == "accepted" and row.attested_at and row.due_at > timezone.now()


def test_r30_the_api_answers_for_the_named_person_only(asked, client):
    w = asked
    client.force_login(w.owner)
    assert client.post(f"/api/v1/sponsorships/{w.asked.pk}/accept/").status_code == 404
    mine = client.get("/api/v1/sponsorships/").json()
    rows = mine["results"] if isinstance(mine, dict) else mine
    assert [r["agent_name"] for r in rows] == ["matrix-agent"] and rows[0]["state"] == "accepted"
    client.force_login(w.newcomer)
    body = client.post(f"/api/v1/sponsorships/{w.asked.pk}/accept/").json()
    assert body["state"] == "accepted" and body["user"] == "newcomer"
    response = client.post(f"/api/v1/sponsorships/{w.asked.pk}/decline/")
    assert response.status_code == 400  # answered already: nothing changes
    assert _of(w.agent, w.newcomer).state == "accepted"
