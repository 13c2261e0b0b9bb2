"""Replay pages and API (docs/policy-replay.md): the chart by day with its table, the drill-down, the editor's
unsaved preview, turning a policy on through its replay, and ``GET /api/v1/policies/<id>/replay/``."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.signin.models import SignIn
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db


def _sign_ins(agent, count: int, ip: str = "10.1.2.3", outcome: str = "success") -> list[SignIn]:
    return SignIn.objects.bulk_create(
        SignIn(at=timezone.now(), agent=agent, client_id="c", actor_kind="agent", ip=ip,
               grant_type="client_credentials", outcome=outcome, credential_type="secret") for _ in range(count))


@pytest.fixture
def watched(registry_world):
    w = registry_world
    w.policy = conditional_access.policy_save(actor=w.ga, data={
        "name": "Office only", "state": "report_only", "grant": "block", "all_agents": True,
        "ip_ranges": ["10.1.0.0/16"]})
    w.inside = _sign_ins(w.agent, 3)
    _sign_ins(w.agent, 2, ip="192.0.2.1")
    return w


def test_r29_replay_page_shows_the_chart_the_tables_and_the_drill_down(client, watched,
                                                                        django_assert_max_num_queries):
    w = watched
    client.force_login(w.ga)
    url = reverse("policy-replay", args=[w.policy.pk])
    body = client.get(url).content.decode()
    assert 'data-chart="policy-replay"' in body and "Show as table" in body
    assert "would have blocked <strong>3 sign-ins</strong>" in body and 'data-agent="matrix-agent"' in body
    assert "report_only" not in body and "R29" not in body
    day = timezone.now().date().isoformat()
    assert f'<a href="{url}?days=7&amp;day={day}#replay-drill"><rect' in body  # the day's column leads to its rows
    drill = client.get(url, {"day": day}).content.decode()
    assert sorted(int(pk) for pk in __import__("re").findall(r'data-sign-in="(\d+)"', drill)) == sorted(
        s.pk for s in w.inside)
    # constant queries whatever the rows
    _sign_ins(w.agent, 200)
    with django_assert_max_num_queries(30):
        assert client.get(url, {"days": 30, "agent": w.agent.pk}).status_code == 200


def test_r29_the_editor_previews_its_unsaved_values(client, watched):
    w = watched
    client.force_login(w.ga)
    data = {"name": "Office only", "state": "report_only", "grant": "block", "all_agents": "on",
            "ip_ranges": "192.0.2.0/24"}
    body = client.post(reverse("policy-replay", args=[w.policy.pk]), data).content.decode()
    assert "would have blocked <strong>2 sign-ins</strong>" in body and 'id="replay-preview"' in body
    w.policy.refresh_from_db()
    assert w.policy.ip_ranges == ["10.1.0.0/16"]  # nothing saved
    bad = client.post(reverse("policy-replay-preview"), {**data, "ip_ranges": "nonsense"})
    assert bad.status_code == 200 and "is not an IP range" in bad.content.decode()
    client.force_login(w.owner)
    assert client.post(reverse("policy-replay-preview"), data).status_code == 403


def test_r29_turning_a_policy_on_shows_the_replay_first(client, watched):
    w = watched
    client.force_login(w.ga)
    # the editor does not turn it on: it saves the rest and sends to the confirmation
    response = client.post(reverse("policy-edit", args=[w.policy.pk]), {
        "name": "Office only", "state": "on", "grant": "block", "all_agents": "on", "ip_ranges": "10.1.0.0/16",
        "description": "edited"})
    assert response.status_code == 302 and response["Location"] == reverse("policy-turn-on", args=[w.policy.pk])
    w.policy.refresh_from_db()
    assert w.policy.state == "report_only" and w.policy.description == "edited"
    page = client.get(reverse("policy-turn-on", args=[w.policy.pk])).content.decode()
    assert "In the last 7 days this policy would have blocked <strong>3 sign-ins</strong>" in page
    assert "of <strong>1 agent</strong>" in page
    confirmed = client.post(reverse("policy-turn-on", args=[w.policy.pk]))
    assert confirmed.status_code == 302
    policy = ConditionalAccessPolicy.objects.get(pk=w.policy.pk)
    if policy.state != "on":  # a high-impact change may wait for a second administrator (docs/four-eyes.md)
        assert "second administrator" in client.get(reverse("policy-list")).content.decode()
    else:
        assert AuditEvent.objects.filter(action="policy.update", target_id=str(policy.pk)).exists()
    client.force_login(w.owner)
    assert client.get(reverse("policy-turn-on", args=[w.policy.pk])).status_code == 403


def test_r29_replay_api(client, watched):
    w = watched
    client.force_login(w.ga)
    answer = client.get(f"/api/v1/policies/{w.policy.pk}/replay/?days=30").json()
    assert answer["blocked_sign_ins"] == 3 and answer["agents"] == 1 and answer["legitimate_blocked"] == 3
    assert len(answer["by_day"]) == 30 and answer["by_agent"][0]["name"] == "matrix-agent"
    assert client.get(f"/api/v1/policies/{w.policy.pk}/replay/?days=5").status_code == 400
    assert client.get("/api/v1/policies/999999/replay/").status_code == 404
    client.force_login(w.other)  # owner of another workspace: reads policies, not alpha's agents
    assert client.get(f"/api/v1/policies/{w.policy.pk}/replay/").json()["blocked_sign_ins"] == 0
    client.force_login(w.contributor)
    assert client.get(f"/api/v1/policies/{w.policy.pk}/replay/").status_code == 403
