"""Page behaviour: sign-in throttling, health, workspace switching, members page, directory, query counts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from portal import audit, workspaces
from portal.models import AuditEvent, User, WorkspaceMembership
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_login_then_dashboard_shows_real_counts(client, world):
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    body = client.get("/").content.decode()
    assert "Alpha" in body and 'data-stat="owners">4<' in body  # owner, owner_b + secadmin, ga inherited
    assert 'data-stat="contributors">1<' in body


def test_repeated_failed_sign_ins_are_throttled(client, world, settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    for _ in range(3):
        assert client.post("/accounts/login/", {"username": "owner", "password": "wrong"}).status_code == 200
    response = client.post("/accounts/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 429 and "Too many failed sign-ins" in response.content.decode()
    assert "_auth_user_id" not in client.session
    # Another account from elsewhere is not locked out by owner's failures.
    other = client_for_address("10.0.0.9")
    assert other.post("/accounts/login/", {"username": "owner_b", "password": PASSWORD}).status_code == 302


def client_for_address(address: str):
    from django.test import Client

    return Client(REMOTE_ADDR=address)


def test_healthz_reports_ok_and_degraded_when_redis_is_unreachable(client, settings):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"] == response.json()["checks"]["broker"] == "ok"
    assert "redis" not in response.json()["failing"]
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/healthz")
    # The node still serves tokens with per-process limits: the load balancer keeps it (docs/design.md, Faults).
    assert response.status_code == 200
    assert response.json()["status"] == "degraded" and "redis" in response.json()["failing"]
    assert response.json()["checks"]["broker"].startswith("error")
    assert response.json()["checks"]["database"] == "ok"


def test_workspace_switcher_changes_the_current_workspace(client, world):
    client.force_login(world.inherited)
    assert "Workspace <strong>Alpha</strong>" in client.get("/").content.decode()
    response = client.post("/workspaces/switch/", {"workspace": "beta", "next": "/jobs/"})
    assert response.status_code == 302 and response["Location"] == "/jobs/"
    assert "Workspace <strong>Beta</strong>" in client.get("/").content.decode()
    response = client.post("/workspaces/switch/", {"workspace": "alpha", "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_members_page_refuses_demoting_below_two_owners_with_a_clear_message(client, world):
    # alpha has owner, owner_b and two inherited owners; drop the inherited ones' effect with a fresh workspace.
    a, b = UserFactory(username="ann"), UserFactory(username="ben")
    ws = workspaces.workspace_create(actor=world.ga, name="Lean", owners=[a, b])
    from portal import directory
    from portal.models import DirectoryRoleAssignment

    for assignment in DirectoryRoleAssignment.objects.filter(user=world.inherited):
        directory.role_unassign(actor=world.ga, assignment=assignment)
    # Only ga is inherited now: ann, ben, ga = 3. Demoting ben leaves 2 (allowed), then ann → refused.
    client.force_login(a)
    m_b = WorkspaceMembership.objects.get(workspace=ws, user=b)
    response = client.post(f"/workspaces/lean/members/{m_b.pk}/role/", {"role": "contributor"}, follow=True)
    assert "ben is now contributor" in response.content.decode()
    m_a = WorkspaceMembership.objects.get(workspace=ws, user=a)
    response = client.post(f"/workspaces/lean/members/{m_a.pk}/role/", {"role": "contributor"}, follow=True)
    body = response.content.decode()
    assert "Refused: Lean would be left with fewer than 2 effective owners" in body
    assert WorkspaceMembership.objects.get(pk=m_a.pk).role == "owner"


def test_member_add_errors_are_shown_and_change_nothing(client, world):
    client.force_login(world.owner)
    before = WorkspaceMembership.objects.count()
    body = client.post("/workspaces/alpha/members/add/", {"user": "nobody", "role": "owner"},
                       follow=True).content.decode()
    assert "No user is called" in body
    body = client.post("/workspaces/alpha/members/add/", {"user": "contributor", "role": "owner"},
                       follow=True).content.decode()
    assert "already a contributor" in body
    assert WorkspaceMembership.objects.count() == before


def test_member_remove_asks_for_confirmation_and_says_what_happens(client, world):
    client.force_login(world.owner)
    m = WorkspaceMembership.objects.get(workspace=world.alpha, user=world.contributor)
    body = client.get(f"/workspaces/alpha/members/{m.pk}/remove/").content.decode()
    assert "lose every platform permission" in body and WorkspaceMembership.objects.filter(pk=m.pk).exists()
    client.post(f"/workspaces/alpha/members/{m.pk}/remove/")
    assert not WorkspaceMembership.objects.filter(pk=m.pk).exists()


def test_directory_create_user_and_refused_deactivation(client, world):
    client.force_login(world.ga)
    response = client.post("/directory/users/new/", {"username": "dana", "display_name": "Dana",
                                                     "password": "short"})
    assert "too short" in response.content.decode() and not User.objects.filter(username="dana").exists()
    response = client.post("/directory/users/new/", {"username": "dana", "display_name": "Dana", "manager": "owner"})
    dana = User.objects.get(username="dana")
    assert response.status_code == 302 and dana.manager == world.owner and not dana.has_usable_password()
    body = client.post(f"/directory/users/{world.ga.pk}/active/", follow=True).content.decode()
    assert "cannot deactivate your own account" in body


def test_404_for_other_workspaces_does_not_leak_names(client, world):
    client.force_login(world.other)
    response = client.get("/workspaces/alpha/members/")
    assert response.status_code == 404 and "owner_b" not in response.content.decode()


def _count_queries(client, url: str) -> int:
    client.get(url)  # warm up: the first request of a session also records the user's last_seen_at
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
        assert response.status_code == 200
    return len(ctx.captured_queries)


def _add_events(n: int) -> None:
    with transaction.atomic():
        audit.record_many(actor=None, changes=[audit.Change(action="test.row", target_label=f"r{i}")
                                               for i in range(n)])


AUDIT_PAGE_QUERIES = 11  # header counters (portal.navigation): one COUNT; the log's newest head and pending count: two
MEMBERS_PAGE_QUERIES = 15


def test_audit_page_runs_a_constant_number_of_queries(client, world):
    client.force_login(world.ga)
    _add_events(10 - AuditEvent.objects.count() % 10)
    small = _count_queries(client, "/audit/")
    _add_events(1000)
    assert AuditEvent.objects.count() > 1000
    large = _count_queries(client, "/audit/")
    assert small == large == AUDIT_PAGE_QUERIES


def test_members_page_runs_a_constant_number_of_queries(client, world):
    client.force_login(world.owner)
    people = UserFactory.create_batch(1000)
    for person in people[:8]:
        workspaces.membership_add(actor=None, workspace=world.alpha, user=person, role="contributor")
    assert WorkspaceMembership.objects.filter(workspace=world.alpha).count() == 11
    small = _count_queries(client, "/workspaces/alpha/members/")
    WorkspaceMembership.objects.bulk_create(
        WorkspaceMembership(workspace=world.alpha, user=p, role="contributor") for p in people[8:]
    )
    assert WorkspaceMembership.objects.filter(workspace=world.alpha).count() > 1000
    large = _count_queries(client, "/workspaces/alpha/members/")
    assert small == large == MEMBERS_PAGE_QUERIES


def test_production_settings_pass_check_deploy():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 20 + "-production-secret-key-for-the-check-0123456789",
           "PORTAL_VAR_DIR": str(ROOT / "var" / "check-deploy")}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
