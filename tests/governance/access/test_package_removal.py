"""Removing an access package (docs/design.md, R29; docs/blast-radius.md): its confirmation shows what stops, and
removing it stops exactly that — tokens, assignments, pending requests — and tells the people it listed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from governance.access import services as access_packages
from governance.access.models import AccessPackage, Assignment
from governance.impact import previews
from governance.runs.choices import RunStatus
from governance.runs.models import Run, Session
from governance.signin.models import AccessToken
from portal.models import AuditEvent, Notification, Permission
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db

SCOPE = "SecurityIncident.ReadWrite.All"


def _package(w, name="Responder"):
    return access_packages.package_save(
        actor=w.owner, workspace=w.alpha, name=name, policy={"approver_kind": "workspace_owners",
                                                             "justification_required": False},
        permissions=Permission.objects.filter(name=SCOPE, kind="application"))


@pytest.fixture
def removable(registry_world):
    """A package with an active assignment (matrix-agent, holding a token that carries its permission, used by a
    running run the contributor started) and a pending request (bystander); tokens that stay: one without the
    permission, one of an agent holding no assignment of it."""
    w = registry_world
    w.package = _package(w)
    w.active = access_packages.assignment_request(actor=w.owner_b, package=w.package, agent=w.agent)
    access_packages.assignment_decide(actor=w.owner, assignment=w.active, approve=True)
    w.bystander = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "bystander", sponsors=[w.owner], owners=[w.owner])).agent
    w.pending = access_packages.assignment_request(actor=w.owner_b, package=w.package, agent=w.bystander)
    loner = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "loner", sponsors=[w.owner], owners=[w.owner])).agent
    now = timezone.now()
    later = now + timedelta(minutes=30)
    session = Session.objects.create(agent=w.agent, opened_by=w.contributor, title="Triage")
    w.run = Run.objects.create(agent=w.agent, session=session, started_by=w.contributor, status=RunStatus.RUNNING,
                               started_at=now, deadline_at=later)
    w.carrying = [
        AccessToken.objects.create(token_hash="carrying-run", agent=w.agent, client_id="c", audience="a",
                                   expires_at=later, scopes=["User.Read.All", SCOPE], run=w.run),
        AccessToken.objects.create(token_hash="carrying-pending", agent=w.bystander, client_id="c", audience="a",
                                   expires_at=later, scopes=[SCOPE]),
    ]
    w.kept = [
        AccessToken.objects.create(token_hash="plain", agent=w.agent, client_id="c", audience="a",
                                   expires_at=later, scopes=["User.Read.All"]),
        AccessToken.objects.create(token_hash="loner", agent=loner, client_id="c", audience="a",
                                   expires_at=later, scopes=[SCOPE]),
    ]
    return w


def test_r29_removing_a_package_stops_exactly_what_its_preview_listed(client, removable):
    w = removable
    client.force_login(w.owner)
    listed = client.get(f"/api/v1/access-packages/{w.package.pk}/preview/?action=remove").json()
    assert sorted(listed["token_ids"]) == sorted(t.pk for t in w.carrying) and listed["assignments"] == 2
    assert [run["id"] for run in listed["runs"]] == [w.run.pk]
    page = client.get(f"/governance/access-packages/{w.package.pk}/remove/", secure=True)
    body = page.content.decode()
    assert page.status_code == 200 and 'id="blast-radius"' in body and "Runs losing their token" in body
    events_before = AuditEvent.objects.count()
    response = client.post(f"/governance/access-packages/{w.package.pk}/remove/", {"reason": "replaced by Triage"},
                           secure=True)
    assert response.status_code == 302 and response["Location"] == f"/governance/access-packages/{w.package.pk}/"

    revoked = set(AccessToken.objects.filter(revoked_at__isnull=False).values_list("pk", flat=True))
    assert revoked == set(listed["token_ids"])  # exactly the listed tokens, none of the kept ones
    assert not AccessToken.objects.filter(pk__in=[t.pk for t in w.kept], revoked_at__isnull=False).exists()
    ended = {a.pk: a for a in Assignment.objects.filter(package=w.package)}
    assert {a.status for a in ended.values()} == {"revoked"}
    assert {a.end_reason for a in ended.values()} == {"access package removed"}
    w.package.refresh_from_db()
    assert w.package.removed_at is not None and w.package.removed_by == w.owner
    assert w.package.removal_reason == "replaced by Triage"

    told = Notification.objects.filter(subject="Access package Responder was removed")
    assert sorted(n.recipient.username for n in told) == sorted(p["username"] for p in listed["people"])
    assert {"owner", "owner_b", "contributor"} <= {n.recipient.username for n in told}

    new_events = AuditEvent.objects.order_by("pk")[events_before:]
    actions = sorted(e.action for e in new_events)
    assert actions.count("package.remove") == 1
    assert actions.count("assignment.revoke") == 2  # one per ended assignment, as a review's results write


def test_r29_the_removal_needs_a_reason_and_changes_nothing_without_one(client, removable):
    w = removable
    client.force_login(w.owner)
    response = client.post(f"/governance/access-packages/{w.package.pk}/remove/", {"reason": "  "}, secure=True)
    assert response.status_code == 200 and 'id="blast-radius"' in response.content.decode()
    w.package.refresh_from_db()
    assert w.package.removed_at is None
    assert set(Assignment.objects.filter(package=w.package).values_list("status", flat=True)) == {"active", "pending"}
    assert not AccessToken.objects.filter(revoked_at__isnull=False).exists()
    with pytest.raises(ValidationError):
        access_packages.package_remove(actor=w.owner, package=w.package, reason="")


def test_r29_a_removed_package_cannot_be_requested_edited_or_removed_again(client, removable):
    w = removable
    access_packages.package_remove(actor=w.owner, package=w.package, reason="retired")
    with pytest.raises(ValidationError, match="removed"):
        access_packages.assignment_request(actor=w.owner_b, package=w.package, agent=w.agent)
    with pytest.raises(ValidationError, match="removed"):
        access_packages.package_save(actor=w.owner, workspace=w.alpha, package=w.package, name="Responder 2",
                                     permissions=Permission.objects.filter(name=SCOPE, kind="application"),
                                     policy={})
    with pytest.raises(ValidationError, match="already removed"):
        access_packages.package_remove(actor=w.owner, package=w.package, reason="again")
    client.force_login(w.owner)
    detail = client.get(f"/governance/access-packages/{w.package.pk}/", secure=True).content.decode()
    assert 'id="package-removed"' in detail and "retired" in detail
    assert "Remove…" not in detail and "Request this package" not in detail
    refused = client.post(f"/governance/access-packages/{w.package.pk}/",
                          {"agent_name": "matrix-agent", "justification": "please"}, secure=True)
    assert refused.status_code == 200 and "can no longer be requested" in refused.content.decode()
    edit = client.get(f"/governance/access-packages/{w.package.pk}/edit/", secure=True)
    assert edit.status_code == 302 and edit["Location"].endswith(f"/access-packages/{w.package.pk}/")
    api = client.post("/api/v1/assignments/", {"package": w.package.pk, "agent": w.agent.pk,
                                               "justification": "please"}, content_type="application/json")
    assert api.status_code == 400
    assert client.get(f"/api/v1/access-packages/{w.package.pk}/").json()["removed_at"] is not None
    again = client.get(f"/governance/access-packages/{w.package.pk}/remove/", secure=True)
    assert again.status_code == 302
    assert not Assignment.objects.filter(package=w.package, status__in=["pending", "active"]).exists()


def test_r29_only_the_workspace_owners_remove_a_package(client, removable):
    w = removable
    url = f"/governance/access-packages/{w.package.pk}/remove/"
    client.force_login(w.contributor)
    assert client.get(url, secure=True).status_code == 403
    assert client.post(url, {"reason": "mine now"}, secure=True).status_code == 403
    detail = client.get(f"/governance/access-packages/{w.package.pk}/", secure=True).content.decode()
    assert "Remove…" not in detail
    client.force_login(w.other)
    assert client.get(url, secure=True).status_code == 404
    assert client.post(url, {"reason": "not yours"}, secure=True).status_code == 404
    with pytest.raises(PermissionDenied):
        access_packages.package_remove(actor=w.contributor, package=w.package, reason="mine now")
    w.package.refresh_from_db()
    assert w.package.removed_at is None
    client.force_login(w.inherited)
    assert "Remove…" in client.get(f"/governance/access-packages/{w.package.pk}/", secure=True).content.decode()
    assert client.post(url, {"reason": "security"}, secure=True).status_code == 302
    w.package.refresh_from_db()
    assert w.package.removed_by == w.inherited


def _packages(w, n: int, prefix: str) -> None:
    for index in range(n):
        package = _package(w, f"{prefix}-{index}")
        if index % 2:
            access_packages.package_remove(actor=w.owner, package=package, reason="done")


def _list_queries(client, query: str = "") -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/governance/access-packages/{query}", secure=True)
    assert response.status_code == 200
    return len(queries), response.content.decode()


def test_r29_the_package_list_hides_removed_packages_unless_asked_in_constant_queries(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    client.get("/governance/access-packages/", secure=True)  # warm the per-process caches
    _packages(w, 2, "few")
    few, body = _list_queries(client)
    assert "few-0" in body and "few-1" not in body
    few_all, body = _list_queries(client, "?show=removed")
    assert "few-1" in body and "data-removed" in body
    _packages(w, 20, "many")
    many, body = _list_queries(client)
    many_all, body = _list_queries(client, "?show=removed")
    assert "many-19" in body
    assert (few, few_all) == (many, many_all)
    assert AccessPackage.objects.filter(removed_at__isnull=False).count() == 11


def test_r29_the_people_told_are_read_as_the_preview_reads_them(removable):
    w = removable
    listed = previews.package_preview(w.package).people
    access_packages.package_remove(actor=w.owner, package=w.package, reason="retired")
    told = Notification.objects.filter(subject="Access package Responder was removed")
    assert sorted(n.recipient.username for n in told) == sorted(p.user.username for p in listed)
