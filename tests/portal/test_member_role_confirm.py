"""Changing a member's role asks first, like removing one: the members page links to a confirmation page that says
what changes; only its POST changes the role (one audit event)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from portal.models import AuditEvent, WorkspaceMembership

pytestmark = pytest.mark.django_db


def test_make_owner_and_make_contributor_ask_for_confirmation_before_changing_anything(client, world):
    w = world
    membership = WorkspaceMembership.objects.get(workspace=w.alpha, user=w.contributor)
    url = reverse("member-role", args=["alpha", membership.pk])
    client.force_login(w.owner)
    members = client.get(reverse("workspace-members", args=["alpha"])).content.decode()
    assert f'href="{url}?role=owner"' in members  # a link to the confirmation, not a one-click form
    assert f'action="{url}"' not in members

    confirm = client.get(url + "?role=owner")
    page = confirm.content.decode()
    assert confirm.status_code == 200 and f"Make {w.contributor.label} an owner of {w.alpha.name}?" in page
    assert 'method="post"' in page and 'name="role" value="owner"' in page and "Cancel" in page
    membership.refresh_from_db()
    assert membership.role == "contributor"
    assert not AuditEvent.objects.filter(action="workspace.member_role_change").exists()

    response = client.post(url, {"role": "owner"})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == "owner"
    assert AuditEvent.objects.filter(action="workspace.member_role_change").count() == 1

    demote = client.get(url + "?role=contributor").content.decode()
    assert "no longer set up or change agents" in demote and "at least two owners" in demote
    members = client.get(reverse("workspace-members", args=["alpha"])).content.decode()
    assert f'href="{url}?role=contributor"' in members


def test_a_contributor_cannot_open_the_role_confirmation(client, world):
    w = world
    membership = WorkspaceMembership.objects.get(workspace=w.alpha, user=w.owner_b)
    client.force_login(w.contributor)
    assert client.get(reverse("member-role", args=["alpha", membership.pk]) + "?role=contributor").status_code == 403
