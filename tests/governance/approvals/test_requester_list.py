"""A requester, and the owners of the agent that waits, see their partner-approval requests on
``/governance/approvals/`` and where each stands: pending (until when), approved or denied (when, by whom), expired."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.approvals import services as approvals
from governance.approvals.models import ApprovalRequest
from portal.timefmt import when

pytestmark = pytest.mark.django_db


def test_the_owner_whose_agent_waits_sees_the_pending_request_and_its_expiry(client, approval_world):
    w = approval_world  # the contributor asked for a partner agent in alpha; owner manages alpha
    client.force_login(w.owner)
    page = client.get(reverse("approval-list")).content.decode()
    assert "Nothing pending" not in page and f'data-request="{w.approval.pk}"' in page
    assert f"Waiting for a Global Administrator; expires {when(w.approval.expires_at)}" in page
    assert client.get(reverse("approval-detail", args=[w.approval.pk])).status_code == 200

    client.force_login(w.contributor)  # the requester
    page = client.get(reverse("approval-list")).content.decode()
    assert f'data-request="{w.approval.pk}"' in page and "All my requests" in page

    client.force_login(w.other)  # another workspace's owner sees nothing of it
    page = client.get(reverse("approval-list")).content.decode()
    assert f'data-request="{w.approval.pk}"' not in page and "No requests" in page
    assert client.get(reverse("approval-detail", args=[w.approval.pk])).status_code == 404


def test_decided_and_expired_requests_say_when_and_by_whom(client, approval_world):
    w = approval_world
    denied = approvals.approval_decide(actor=w.ga, approval=w.approval, approve=False, reason="Reads too much.")
    client.force_login(w.owner)
    page = client.get(reverse("approval-list")).content.decode()
    assert f"Denied by {w.ga.label}, {when(denied.decided_at)}: Reads too much." in page
    assert "UTC" in when(denied.decided_at)

    ApprovalRequest.objects.filter(pk=w.approval.pk).update(status="expired", expires_at=timezone.now())
    page = client.get(reverse("approval-list") + "?tab=expired").content.decode()
    assert "Nobody decided before" in page and f'data-request="{w.approval.pk}"' in page


def test_a_global_administrators_queue_still_opens_on_pending(client, approval_world):
    w = approval_world
    client.force_login(w.ga)
    page = client.get(reverse("approval-list")).content.decode()
    assert f'data-request="{w.approval.pk}"' in page and "All my requests" not in page
