"""One definition of when an agent's access ends (``governance.access.ends``: the earlier of the assignment's end and
the agent's expiry), shown with its zone by the agent page, the notification and the review item alike."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agents.models import Agent
from governance.access import services as access_packages
from governance.access.ends import access_ends, assignment_ends
from governance.reviews.campaigns import review_create
from portal.models import Notification
from portal.timefmt import when

pytestmark = pytest.mark.django_db


def test_access_ends_at_the_earlier_of_the_assignment_and_the_agent():
    now = timezone.now()
    assert access_ends(now + timedelta(days=2), now + timedelta(days=1)) == now + timedelta(days=1)
    assert access_ends(now + timedelta(days=2), None) == now + timedelta(days=2)
    assert access_ends(None, None) is None


def test_the_agent_page_the_notification_and_the_review_item_show_the_same_end_with_its_zone(client, approval_world):
    w = approval_world
    agent_expiry = (timezone.now() + timedelta(days=1, hours=3)).replace(second=0, microsecond=0)
    Agent.objects.filter(pk=w.agent.pk).update(expires_at=agent_expiry)  # before the assignment's 30 days
    assignment = access_packages.assignment_decide(actor=w.owner, assignment=w.assignment, approve=True)
    assignment.refresh_from_db()
    ends = assignment_ends(assignment)
    assert ends == agent_expiry < assignment.expires_at
    shown = when(ends)
    assert shown.endswith(" UTC")

    notification = Notification.objects.filter(recipient=w.owner_b, subject__contains="Responder").latest("pk")
    assert notification.body == f"Until {shown}."

    client.force_login(w.owner)
    page = client.get(reverse("agent-detail", args=[w.agent.pk])).content.decode()
    assert f'data-ends>{shown}</td>' in page

    campaign = review_create(actor=w.owner_b, workspace=w.alpha, name="Responder review, again",
                             scope_kind="packages", packages=[w.package], reviewer_kind="sponsors",
                             starts_at=timezone.now() - timedelta(minutes=5), duration_days=14)
    item = campaign.instances.get().items.get(assignment=assignment)
    assert item.ends_at == ends
    mine = client.get(reverse("review-mine", args=[campaign.pk])).content.decode()
    assert f"ends {shown}" in mine

    detail = client.get(reverse("assignment-detail", args=[assignment.pk])).content.decode()
    assert shown in detail
