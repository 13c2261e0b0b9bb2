"""R19: access reviews — campaigns, evidence and recommendations, decisions, the end of an instance, the job."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.access import services as ap
from governance.access.models import Assignment
from governance.reviews.applying import review_instance_apply, review_instance_close
from governance.reviews.campaigns import review_create
from governance.reviews.decisions import review_accept_recommendations, review_decide
from governance.reviews.models import ReviewDecision, ReviewInstance, ReviewItem
from governance.reviews.opening import recommend
from governance.reviews.runner import reviews_run
from governance.reviews.selectors import open_item_count, results
from governance.signin.models import SignIn
from portal import jobs
from portal.models import AuditEvent, JobRun, Notification, Permission, User
from tests.factories import UserFactory, agent_spec

pytestmark = pytest.mark.django_db


def _package(w, name="Responder"):
    return ap.package_save(actor=w.owner, workspace=w.alpha, name=name,
                           policy={"approver_kind": "none", "justification_required": False},
                           permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All",
                                                                 kind="application"))


def _agents(w, count: int, prefix: str = "rev") -> list[Agent]:
    specs = [agent_spec(w.blueprint, f"{prefix}-{i}", sponsors=[w.owner], owners=[w.owner_b]) for i in range(count)]
    return [p.agent for p in registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=specs)]


def _idle(agent: Agent, days: int) -> None:
    """The agent's last use (a successful sign-in: governance.usage's definition) ``days`` ago."""
    SignIn.objects.create(agent=agent, at=timezone.now() - timedelta(days=days), client_id="review-test",
                          outcome="success", granted_scopes=["User.Read.All"])


def _campaign(w, packages, **fields):
    options = {"name": "Quarterly", "scope_kind": "packages", "reviewer_kind": "sponsors",
               "starts_at": timezone.now() - timedelta(hours=1), "duration_days": 7}
    options.update(fields)
    return review_create(actor=w.owner, workspace=w.alpha, packages=packages, **options)


@pytest.fixture
def held(registry_world):
    """Three agents holding the package: one used yesterday, one idle for 40 days, one never used since set-up."""
    w = registry_world
    package = _package(w)
    used, idle, never = _agents(w, 3)
    for agent in (used, idle, never):
        ap.assignment_request(actor=w.owner, package=package, agent=agent)
    _idle(used, 1)
    _idle(idle, 40)
    Agent.objects.filter(pk=never.pk).update(created_at=timezone.now() - timedelta(days=60))
    w.package, w.used, w.idle, w.never = package, used, idle, never
    return w


def _item(instance, agent) -> ReviewItem:
    return instance.items.get(agent=agent)


def test_r19_recurrence_the_job_on_four_consecutive_months_opens_exactly_four_instances(held):
    w = held
    start = datetime(2031, 1, 1, 9, 0, tzinfo=UTC)
    campaign = _campaign(w, [w.package], recurrence="monthly", starts_at=start, duration_days=7)
    assert not campaign.instances.exists()  # not started yet
    for month in range(1, 5):
        for hour in (1, 5):  # the hourly job runs twice in each period: the second run opens nothing
            reviews_run(now=datetime(2031, month, 1, 9 + hour, 0, tzinfo=UTC))
        reviews_run(now=datetime(2031, month, 20, tzinfo=UTC))  # between periods: nothing opens
    starts = list(campaign.instances.order_by("starts_at").values_list("starts_at", flat=True))
    assert starts == [datetime(2031, m, 1, 9, 0, tzinfo=UTC) for m in range(1, 5)]
    assert set(campaign.instances.values_list("status", flat=True)) == {"applied"}
    assert AuditEvent.objects.filter(action="review.open").count() == 4
    with pytest.raises(ValidationError, match="at most 7 days"):
        _campaign(w, [w.package], name="Too long", recurrence="weekly", duration_days=8)


def test_r19_recommendation_comes_from_inactivity_with_the_reason(held, settings):
    w = held
    instance = _campaign(w, [w.package]).instances.get()
    used, idle, never = (_item(instance, a) for a in (w.used, w.idle, w.never))
    assert used.recommendation == "approve" and "within the last 30 days" in used.recommendation_reason
    assert idle.recommendation == "deny" and "Unused for 40 days" in idle.recommendation_reason
    assert never.recommendation == "deny" and "no recorded use since set-up" in never.recommendation_reason
    assert used.access == "Access package Responder" and "requested by owner" in used.granted_by
    assert used.ends_at is not None and used.last_used_at.date() == (timezone.now() - timedelta(days=1)).date()
    settings.REVIEW_INACTIVE_DAYS = 90
    assert recommend(idle.last_used_at, timezone.now())[0] == "approve"


@pytest.mark.parametrize(("mode", "expected"), [
    ("keep", {"used": "approve", "idle": "approve", "never": "approve"}),
    ("remove", {"used": "approve", "idle": "deny", "never": "deny"}),
    ("recommendation", {"used": "approve", "idle": "deny", "never": "deny"}),
])
def test_r19_default_for_no_response_in_all_three_modes(held, mode, expected):
    w = held
    campaign = _campaign(w, [w.package], no_response=mode, auto_apply=False)
    instance = campaign.instances.get()
    review_decide(actor=w.owner, item=_item(instance, w.used), decision="approve")
    review_decide(actor=w.owner, item=_item(instance, w.idle), decision="dont_know")
    review_instance_close(actor=w.owner, instance=instance)
    finals = {name: _item(instance, getattr(w, name)) for name in expected}
    assert {name: item.final_decision for name, item in finals.items()} == expected
    assert finals["used"].final_source == "reviewer" and finals["never"].final_source == "default"
    assert finals["idle"].final_source == "default"  # "don't know" is no answer
    assert Assignment.objects.filter(package=w.package, status="active").count() == 3  # auto_apply off


def test_r19_auto_apply_revokes_through_the_service_with_audit_events(held):
    w = held
    instance = _campaign(w, [w.package], no_response="keep").instances.get()
    review_decide(actor=w.owner, item=_item(instance, w.idle), decision="deny", justification="unused")
    review_instance_close(actor=w.owner, instance=instance)
    assert review_instance_apply(instance=instance) == {"removed": 1, "already_ended": 0}
    revoked = Assignment.objects.get(agent=w.idle, package=w.package)
    assert revoked.status == "revoked" and "access review Quarterly" in revoked.end_reason
    event = AuditEvent.objects.get(action="assignment.revoke", target_id=str(revoked.pk))
    assert event.actor_kind == "system" and event.before["status"] == "active" and event.after["status"] == "revoked"
    assert Assignment.objects.filter(package=w.package, status="active").count() == 2
    assert ReviewInstance.objects.get(pk=instance.pk).status == "applied"
    assert AuditEvent.objects.filter(action__in=["review.close", "review.apply"]).count() == 2


def test_r19_agent_scope_denial_disables_the_agent_through_the_registry(held):
    w = held
    campaign = _campaign(w, [], name="Agents", scope_kind="workspace_agents", reviewer_kind="owners",
                         no_response="keep")
    instance = campaign.instances.get()
    item = _item(instance, w.idle)
    assert "Agent identity with 1 permission(s): User.Read.All" == item.access
    assert instance.items.count() == Agent.objects.filter(workspace=w.alpha, status="active").count()
    review_decide(actor=w.owner_b, item=item, decision="deny", justification="gone")
    review_instance_close(actor=None, instance=instance)
    review_instance_apply(instance=instance)
    assert Agent.objects.get(pk=w.idle.pk).status == "disabled"
    assert AuditEvent.objects.filter(action="agent.disable", target_id=str(w.idle.pk), actor_kind="system").exists()


def test_r19_the_job_run_twice_applies_once(held):
    w = held
    campaign = _campaign(w, [w.package])  # default: follow the recommendation → idle and never are removed
    instance = campaign.instances.get()
    after_end = instance.ends_at + timedelta(minutes=1)
    first = reviews_run(now=after_end)
    second = reviews_run(now=after_end)
    assert (first["closed"], first["removed"]) == (1, 2)
    assert (second["closed"], second["removed"]) == (0, 0)
    assert AuditEvent.objects.filter(action="assignment.revoke").count() == 2
    assert AuditEvent.objects.filter(action="review.apply").count() == 1
    with pytest.raises(ValidationError, match="already closed"):
        review_instance_close(actor=w.owner, instance=instance)
    run = jobs.job_execute("run_access_reviews")  # the registered job, recorded as a JobRun
    assert run.status == "succeeded" and JobRun.objects.filter(job="run_access_reviews").exists()


def test_r19_reminders_halfway_and_one_day_before_the_end_once_each(held):
    w = held
    instance = _campaign(w, [w.package]).instances.get()  # 7 days
    Notification.objects.all().delete()
    halfway = instance.starts_at + timedelta(days=3, hours=13)
    assert reviews_run(now=halfway)["reminders"] == 1
    assert reviews_run(now=halfway + timedelta(hours=1))["reminders"] == 0
    last_day = instance.ends_at - timedelta(hours=20)
    assert reviews_run(now=last_day)["reminders"] == 1
    assert reviews_run(now=last_day + timedelta(hours=1))["reminders"] == 0
    assert Notification.objects.filter(recipient=w.owner, subject__startswith="Reminder").count() == 2
    review_accept_recommendations(actor=w.owner, instance=instance)
    ReviewInstance.objects.filter(pk=instance.pk).update(reminders_sent=[])
    assert reviews_run(now=last_day)["reminders"] == 0  # nobody has open items


def test_r19_a_reviewer_of_their_own_access_is_refused(registry_world, client):
    w = registry_world
    package = _package(w)
    mine = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "runs-as-owner", identity_type="user_account", run_as_user=w.owner, scope="user",
        sponsors=[w.owner], owners=[w.owner_b])).agent
    ap.assignment_request(actor=w.owner, package=package, agent=mine)
    campaign = _campaign(w, [package], named_reviewers=[w.owner], reviewer_kind="named", fallback_reviewer=w.owner_b)
    item = campaign.instances.get().items.get()
    assert list(item.reviewers.all()) == [w.owner_b]  # the subject is never chosen; the fallback reviews it
    from governance.reviews.models import ReviewItemReviewer

    ReviewItemReviewer.objects.create(item=item, reviewer=w.owner, instance=item.instance)  # even if named later
    with pytest.raises(PermissionDenied, match="your own access"):
        review_decide(actor=w.owner, item=item, decision="approve")
    client.force_login(w.owner)
    assert client.post(f"/governance/reviews/items/{item.pk}/decide/", {"decision": "approve"}).status_code == 403
    assert review_accept_recommendations(actor=w.owner, instance=item.instance) == 0
    assert not ReviewDecision.objects.exists()


def test_r19_a_reviewer_changes_their_decision_until_the_end(held):
    w = held
    instance = _campaign(w, [w.package]).instances.get()
    item = _item(instance, w.used)
    review_decide(actor=w.owner, item=item, decision="dont_know")
    review_decide(actor=w.owner, item=item, decision="approve", justification="still on call")
    decision = ReviewDecision.objects.get(item=item)
    assert (decision.decision, decision.justification) == ("approve", "still on call")
    change = AuditEvent.objects.get(action="review.decision_change")
    assert change.before["decision"] == "dont_know" and change.after["decision"] == "approve"
    ReviewInstance.objects.filter(pk=instance.pk).update(ends_at=timezone.now() - timedelta(seconds=1),
                                                         starts_at=timezone.now() - timedelta(days=2))
    with pytest.raises(ValidationError, match="ended"):
        review_decide(actor=w.owner, item=item, decision="deny", justification="too late")
    with pytest.raises(PermissionDenied, match="not a reviewer"):
        review_decide(actor=w.contributor, item=item, decision="approve")


def test_r19_deny_without_justification_is_refused(held):
    w = held
    item = _item(_campaign(w, [w.package]).instances.get(), w.idle)
    with pytest.raises(ValidationError, match="justification"):
        review_decide(actor=w.owner, item=item, decision="deny", justification="  ")
    assert not ReviewDecision.objects.exists()
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():  # the database holds the rule too
        ReviewDecision.objects.create(item=item, reviewer=w.owner, decision="deny")


def test_r19_accept_recommendations_in_bulk(held, client):
    w = held
    campaign = _campaign(w, [w.package])
    instance = campaign.instances.get()
    review_decide(actor=w.owner, item=_item(instance, w.idle), decision="approve")  # kept as decided
    assert open_item_count(w.owner) == 2
    client.force_login(w.owner)
    body = client.get("/governance/reviews/").content.decode()
    assert 'aria-label="Reviews, 2 open"' in body
    response = client.post(f"/governance/reviews/{campaign.pk}/accept/")
    assert response.status_code == 302
    decisions = dict(ReviewDecision.objects.filter(reviewer=w.owner).values_list("item__agent__name", "decision"))
    assert decisions == {w.used.name: "approve", w.idle.name: "approve", w.never.name: "deny"}
    assert ReviewDecision.objects.get(item__agent=w.never).justification.startswith("Accepted the recommendation")
    assert open_item_count(w.owner) == 0
    assert 'aria-label="Reviews' not in client.get("/governance/reviews/").content.decode()


def test_r19_results_counts_and_csv_export(held, client):
    w = held
    campaign = _campaign(w, [w.package])
    instance = campaign.instances.get()
    review_decide(actor=w.owner, item=_item(instance, w.used), decision="approve")
    review_decide(actor=w.owner, item=_item(instance, w.idle), decision="deny", justification="=cmd|x")
    client.force_login(w.owner)
    response = client.post(f"/governance/reviews/{campaign.pk}/close/")
    assert response.status_code == 302
    counts = results(instance)
    assert (counts["total"], counts["reviewed"], counts["kept"], counts["removed"], counts["by_default"],
            counts["applied"]) == (3, 2, 1, 2, 1, 2)
    page = client.get(f"/governance/reviews/{campaign.pk}/results/").content.decode()
    assert 'data-count="removed">2<' in page and "Results applied" in page
    export = client.get(f"/governance/reviews/{campaign.pk}/results.csv")
    assert export["Content-Type"] == "text/csv" and export.streaming
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert len(rows) == 3
    idle = next(r for r in rows if r["agent"] == w.idle.name)
    assert idle["final_decision"] == "deny" and idle["applied_result"] == "revoked"
    assert idle["decisions"] == "owner: deny (=cmd|x)"  # inside the cell, not at its start
    never = next(r for r in rows if r["agent"] == w.never.name)
    assert never["final_source"] == "default" and never["recommendation"] == "deny"
    client.force_login(w.contributor)
    assert client.get(f"/governance/reviews/{campaign.pk}/results.csv").status_code == 403


def test_r19_api_decisions_endpoint(held, client):
    w = held
    campaign = _campaign(w, [w.package])
    item = _item(campaign.instances.get(), w.idle)
    client.force_login(w.owner)
    listed = client.get(f"/api/v1/reviews/{campaign.pk}/decisions/").json()
    assert {i["agent"] for i in listed} == {w.used.name, w.idle.name, w.never.name}
    assert all(i["decision"] is None for i in listed)
    url = f"/api/v1/reviews/{campaign.pk}/decisions/"
    refused = client.post(url, {"item": item.pk, "decision": "deny"}, content_type="application/json")
    assert refused.status_code == 400 and "justification" in refused.json()["errors"][0]
    decided = client.post(url, {"item": item.pk, "decision": "deny", "justification": "idle"},
                          content_type="application/json")
    assert decided.status_code == 200 and decided.json()["decision"] == "deny"
    assert client.get(f"/api/v1/reviews/{campaign.pk}/").json()["name"] == "Quarterly"
    client.force_login(w.contributor)
    assert client.get(url).json() == []
    assert client.post(url, {"item": item.pk, "decision": "approve"},
                       content_type="application/json").status_code == 403
    review_instance_close(actor=w.owner, instance=item.instance)
    client.force_login(w.owner)
    assert client.get(url).status_code == 404  # no open instance any more


def test_r19_only_owners_create_and_close_and_pages_render(held, client):
    w = held
    with pytest.raises(PermissionDenied):
        review_create(
            actor=w.contributor, workspace=w.alpha, name="Nope", scope_kind="packages", packages=[w.package],
            reviewer_kind="sponsors", starts_at=timezone.now(), duration_days=3)
    client.force_login(w.owner)
    response = client.post("/governance/reviews/new/", {
        "name": "Partner check", "scope_kind": "partner_agents", "reviewer_kind": "named",
        "named_reviewers": "owner_b", "recurrence": "quarterly",
        "starts_at": (timezone.now() - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"), "duration_days": 10,
        "auto_apply": "on", "no_response": "keep"})
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = w.alpha.access_reviews.get(name="Partner check")
    assert campaign.instances.get().status == "open"
    for url in (f"/governance/reviews/{campaign.pk}/", f"/governance/reviews/{campaign.pk}/review/",
                "/governance/reviews/", f"/governance/reviews/{campaign.pk}/results/"):
        assert client.get(url).status_code == 200
    UserFactory(username="outsider")
    client.force_login(User.objects.get(username="outsider"))
    assert client.get(f"/governance/reviews/{campaign.pk}/").status_code == 404


def test_r19_results_csv_neutralises_names_that_start_like_a_formula(held, client):
    w = held
    Agent.objects.filter(pk=w.idle.pk).update(name="-2+3")
    Agent.objects.filter(pk=w.used.pk).update(name="@A1")
    campaign = _campaign(w, [w.package])
    client.force_login(w.owner)
    export = client.get(f"/governance/reviews/{campaign.pk}/results.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert sorted(r["agent"] for r in rows) == sorted(["'-2+3", "'@A1", w.never.name])
