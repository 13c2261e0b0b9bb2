"""Risk for agents (R21): detections from the sign-in log, the risk level, administrators' decisions, automatic
remediation (with R22's token revocation), the Risky agents pages and the demo step."""

from __future__ import annotations

import base64
from datetime import UTC, timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.conditional_access.choices import RiskLevel
from governance.risk import services as risk
from governance.risk.choices import DetectionKind, DetectionStatus
from governance.risk.models import RiskDetection, RiskRemediationPolicy
from governance.signin import tokens
from governance.signin.choices import SignInOutcome
from governance.signin.models import AccessToken, SignIn
from portal import jobs
from portal.models import AuditEvent, JobRun
from tests.factories import UserFactory, agent_spec, grant_role, make_workspace

pytestmark = pytest.mark.django_db

A, B, C = "User.Read.All", "Policy.Read.All", "Directory.Read.All"


# --- helpers ----------------------------------------------------------------------------------------------------
def _sign_in(agent, at, granted=(), outcome=SignInOutcome.SUCCESS) -> SignIn:
    return SignIn.objects.create(agent=agent, client_id=f"client-{agent.pk}", at=at, outcome=outcome,
                                 requested_scopes=list(granted),
                                 granted_scopes=list(granted) if outcome == SignInOutcome.SUCCESS else [])


def _many_sign_ins(agent, ats, granted=()) -> None:
    SignIn.objects.bulk_create([SignIn(agent=agent, client_id=f"client-{agent.pk}", at=at, outcome="success",
                                       requested_scopes=list(granted), granted_scopes=list(granted)) for at in ats])


def _detections(agent, kind=None):
    rows = RiskDetection.objects.filter(agent=agent)
    return rows.filter(kind=kind) if kind else rows


def _level(agent) -> str:
    return Agent.objects.get(pk=agent.pk).risk_level


def _agent(w, name, workspace=None, owner=None):
    workspace, owner = workspace or w.alpha, owner or w.owner
    return registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        w.blueprint, name, sponsors=[owner], owners=[owner])).agent


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _token(client, agent, secret, ip="127.0.0.1"):
    return client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": agent.identity.client_id,
                                         "client_secret": secret}, REMOTE_ADDR=ip)


def _minute_ago(minutes: int):
    return (timezone.now() - timedelta(minutes=minutes)).replace(second=0, microsecond=0)


# --- detections from the sign-in log (the evaluate_risk job) --------------------------------------------------
def test_r21_new_scope_detection_for_a_scope_never_granted_before(registry_world):
    w = registry_world
    agent, newcomer, veteran = w.agent, _agent(w, "newcomer-agent"), _agent(w, "veteran-agent")
    now = timezone.now()
    # matrix-agent: its very first sign-in (inside the window) is the baseline, not a detection.
    _sign_in(agent, now - timedelta(minutes=8), [A])
    _sign_in(agent, now - timedelta(minutes=7), [A])
    _sign_in(agent, now - timedelta(minutes=6), [C], outcome=SignInOutcome.FAILURE)  # asked, not granted
    _sign_in(agent, now - timedelta(minutes=5), [A, B])
    _sign_in(agent, now - timedelta(minutes=4), [A, B])  # B is known by now
    # newcomer-agent: one sign-in only, whatever it holds.
    _sign_in(newcomer, now - timedelta(minutes=3), [A, B, C])
    # veteran-agent: history before the window counts as known.
    _sign_in(veteran, now - timedelta(hours=3), [A])
    _sign_in(veteran, now - timedelta(minutes=2), [A, C])

    counts = risk.evaluate_risk()

    assert counts["new_scope"] == 2
    found = _detections(agent, DetectionKind.NEW_SCOPE).get()
    assert (found.key, found.level, found.status) == (B, RiskLevel.LOW, DetectionStatus.OPEN)
    assert list(_detections(veteran).values_list("key", flat=True)) == [C]
    assert not _detections(newcomer).exists()
    assert _level(agent) == _level(veteran) == RiskLevel.LOW and _level(newcomer) == RiskLevel.NONE
    event = AuditEvent.objects.filter(action="risk.detect", target_id=str(agent.pk)).get()
    assert event.actor_kind == "system" and event.after["kind"] == "new_scope"


def test_r21_burst_of_token_requests_in_one_clock_minute_is_medium(registry_world, settings):
    settings.RISK_BURST_PER_MINUTE = 5
    w = registry_world
    calm = _agent(w, "calm-agent")
    busy_minute, other_minute = _minute_ago(4), _minute_ago(3)
    for second in range(4):  # failures and blocked requests count as token requests too
        _sign_in(w.agent, busy_minute + timedelta(seconds=second), [A])
    _sign_in(w.agent, busy_minute + timedelta(seconds=30), outcome=SignInOutcome.FAILURE)
    _sign_in(w.agent, busy_minute + timedelta(seconds=59), outcome=SignInOutcome.BLOCKED)
    for second in range(5):  # exactly the limit in another minute: not a burst
        _sign_in(w.agent, other_minute + timedelta(seconds=second * 10), [A])
        _sign_in(calm, other_minute + timedelta(seconds=second * 10), [A])

    counts = risk.evaluate_risk()

    assert counts["request_burst"] == 1
    burst = _detections(w.agent, DetectionKind.REQUEST_BURST).get()
    assert burst.level == RiskLevel.MEDIUM and burst.key == busy_minute.astimezone(UTC).isoformat()
    assert "6 token requests" in burst.detail
    assert _level(w.agent) == RiskLevel.MEDIUM and _level(calm) == RiskLevel.NONE


def test_r21_orphaned_use_is_a_successful_sign_in_after_the_sponsor_left(registry_world):
    w = registry_world
    now = timezone.now()
    _sign_in(w.agent, now - timedelta(minutes=10), [A])  # still sponsored then
    registry.agent_set_orphaned(actor=None, agent=w.agent, orphaned=True)
    assert not risk.evaluate_risk()["orphaned_use"]  # nothing since the flag

    _sign_in(w.agent, timezone.now(), [A], outcome=SignInOutcome.FAILURE)  # failures are not use
    assert not risk.evaluate_risk()["orphaned_use"]
    _sign_in(w.agent, timezone.now(), [A])
    _sign_in(w.agent, timezone.now(), [A])

    assert risk.evaluate_risk()["orphaned_use"] == 1
    orphaned = _detections(w.agent, DetectionKind.ORPHANED_USE).get()
    assert orphaned.level == RiskLevel.MEDIUM and orphaned.key == timezone.now().astimezone(UTC).date().isoformat()
    assert "2 successful sign-in(s)" in orphaned.detail
    assert _level(w.agent) == RiskLevel.MEDIUM


def test_r21_evaluate_risk_is_idempotent(registry_world, settings):
    settings.RISK_BURST_PER_MINUTE = 3
    w = registry_world
    minute = _minute_ago(2)
    _sign_in(w.agent, minute - timedelta(minutes=5), [A])
    for second in range(4):
        _sign_in(w.agent, minute + timedelta(seconds=second), [A, B])
    registry.agent_set_orphaned(actor=None, agent=w.agent, orphaned=True)
    _sign_in(w.agent, timezone.now(), [A, B])

    first = jobs.job_execute("evaluate_risk")
    assert first.status == "succeeded", first.error
    assert first.counts | {"sign_ins": 0} == {"sign_ins": 0, "new_scope": 1, "request_burst": 1, "orphaned_use": 1,
                                              "agents_refreshed": 1, "remediated": 0}
    state = (list(RiskDetection.objects.values_list("kind", "key", "level")), AuditEvent.objects.count(),
             _level(w.agent))

    second = jobs.job_execute("evaluate_risk")  # the watermark overlaps the first run's window
    risk.evaluate_risk()  # and a direct call looks back 15 minutes
    assert second.status == "succeeded"
    assert {k: v for k, v in second.counts.items() if k != "sign_ins"} == {
        "new_scope": 0, "request_burst": 0, "orphaned_use": 0, "agents_refreshed": 0, "remediated": 0}
    assert (list(RiskDetection.objects.values_list("kind", "key", "level")), AuditEvent.objects.count(),
            _level(w.agent)) == state


def test_r21_evaluate_risk_reads_from_the_last_successful_run(registry_world):
    now = timezone.now()
    assert risk.evaluation_start(now) == (now - timedelta(minutes=15)).replace(second=0, microsecond=0)
    started = now - timedelta(hours=2)
    JobRun.objects.create(job="evaluate_risk", trigger="schedule", status="succeeded", started_at=started,
                          finished_at=started)
    JobRun.objects.create(job="evaluate_risk", trigger="schedule", status="failed", started_at=now,
                          finished_at=now)  # a failed run moves nothing
    assert risk.evaluation_start(now) == (started - timedelta(minutes=1)).replace(second=0, microsecond=0)
    # A new scope granted an hour ago (after that run) is found; on a first run it would be out of the window.
    _sign_in(registry_world.agent, now - timedelta(hours=3), [A])
    _sign_in(registry_world.agent, now - timedelta(hours=1), [A, B])
    assert risk.evaluate_risk()["new_scope"] == 1


def test_r21_evaluate_risk_runs_the_same_queries_at_10_and_200_sign_ins(registry_world):
    w = registry_world

    def queries_for(n: int) -> int:
        SignIn.objects.all().delete()
        RiskDetection.objects.all().delete()
        Agent.objects.filter(pk=w.agent.pk).update(risk_level=RiskLevel.NONE)
        now = timezone.now()
        _sign_in(w.agent, now - timedelta(hours=1), [A])
        _many_sign_ins(w.agent, [now - timedelta(seconds=4 * i + 1) for i in range(n)], [A, B])  # 15 a minute
        with CaptureQueriesContext(connection) as captured:
            counts = risk.evaluate_risk()
        assert counts["new_scope"] == 1 and counts["sign_ins"] == n
        return len(captured)

    assert queries_for(10) == queries_for(200)


# --- the level, decisions and remediation ---------------------------------------------------------------------
def test_r21_agent_risk_is_the_highest_open_detection(registry_world):
    w = registry_world
    low = risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=B)
    assert _level(w.agent) == RiskLevel.LOW
    medium = risk.record_detection(agent=w.agent, kind=DetectionKind.REQUEST_BURST, level=RiskLevel.MEDIUM, key="m")
    assert _level(w.agent) == RiskLevel.MEDIUM
    risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=C)
    assert _level(w.agent) == RiskLevel.MEDIUM  # a lower one does not lower it
    assert risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.HIGH, key=B) is None
    assert _detections(w.agent).count() == 3  # the same (kind, key) is raised once
    risk.detection_dismiss(actor=w.ga, detection=medium)
    assert _level(w.agent) == RiskLevel.LOW
    risk.detection_confirm_compromised(actor=w.ga, detection=low)  # confirmed compromised counts, at high
    low.refresh_from_db()
    assert (low.status, low.level) == (DetectionStatus.CONFIRMED_COMPROMISED, RiskLevel.HIGH)
    assert _level(w.agent) == RiskLevel.HIGH


def test_r21_confirm_safe_and_dismiss_lower_the_risk_and_are_audited(registry_world):
    w = registry_world
    low = risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=B)
    medium = risk.record_detection(agent=w.agent, kind=DetectionKind.REQUEST_BURST, level=RiskLevel.MEDIUM, key="m")
    assert _level(w.agent) == RiskLevel.MEDIUM

    for refused in (w.owner, w.contributor, w.other):  # owners read risk; only the two admin roles decide
        with pytest.raises(PermissionDenied):
            risk.detection_confirm_safe(actor=refused, detection=medium)
    assert RiskDetection.objects.get(pk=medium.pk).status == DetectionStatus.OPEN

    risk.detection_confirm_safe(actor=w.inherited, detection=medium)  # a Security Administrator
    assert _level(w.agent) == RiskLevel.LOW
    risk.detection_dismiss(actor=w.ga, detection=low)
    assert _level(w.agent) == RiskLevel.NONE

    medium.refresh_from_db()
    assert (medium.status, medium.resolved_by, medium.resolved_at is not None) == (
        DetectionStatus.CONFIRMED_SAFE, w.inherited, True)
    safe = AuditEvent.objects.get(action="risk.confirmed_safe")
    assert (safe.actor, safe.target_id, safe.before["status"], safe.after["detection_id"]) == (
        w.inherited, str(w.agent.pk), "open", medium.pk)
    assert AuditEvent.objects.get(action="risk.dismissed").actor == w.ga

    with pytest.raises(ValidationError, match="already confirmed safe"):  # decided detections stay decided
        risk.detection_dismiss(actor=w.ga, detection=medium)
    with pytest.raises(ValidationError, match="already dismissed"):
        risk.detection_confirm_compromised(actor=w.ga, detection=low)
    assert RiskDetection.objects.get(pk=low.pk).status == DetectionStatus.DISMISSED


def test_r21_admin_confirms_an_agent_compromised_at_high_and_its_tokens_end(client, registry_world):
    w = registry_world
    _cred, secret = registry.credential_rotate(actor=None, agent=w.agent)
    assert _token(client, w.agent, secret).status_code == 200
    with pytest.raises(ValidationError, match="Say why"):
        risk.agent_confirm_compromised(actor=w.ga, agent=w.agent, reason="  ")
    with pytest.raises(PermissionDenied):
        risk.agent_confirm_compromised(actor=w.owner, agent=w.agent, reason="leaked")
    assert not _detections(w.agent).exists()

    detection = risk.agent_confirm_compromised(actor=w.ga, agent=w.agent, reason="Secret found in a public repo")

    assert (detection.kind, detection.level, detection.status, detection.resolved_by) == (
        DetectionKind.ADMIN_CONFIRMED, RiskLevel.HIGH, DetectionStatus.CONFIRMED_COMPROMISED, w.ga)
    assert _level(w.agent) == RiskLevel.HIGH
    assert not AccessToken.objects.filter(agent=w.agent, revoked_at__isnull=True).exists()  # R22: compromise
    assert Agent.objects.get(pk=w.agent.pk).status == "active"  # remediation is off: not disabled
    event = AuditEvent.objects.get(action="risk.agent_confirm_compromised")
    assert event.actor == w.ga and event.after["detail"] == "Secret found in a public repo"
    # Once dealt with, an administrator closes it and the risk goes.
    risk.detection_dismiss(actor=w.inherited, detection=detection)
    assert _level(w.agent) == RiskLevel.NONE


def test_r21_auto_remediation_disables_and_revokes_tokens(client, registry_world):
    w = registry_world
    server, server_secret = tokens.resource_server_create(actor=None, name="rs")
    _cred, secret = registry.credential_rotate(actor=None, agent=w.agent)
    response = _token(client, w.agent, secret)
    assert response.status_code == 200, response.content
    value = response.json()["access_token"]

    def introspect() -> dict:
        answer = client.post("/oauth/introspect/", {"token": value},
                             HTTP_AUTHORIZATION=_basic(server.client_id, server_secret))
        assert answer.status_code == 200
        return answer.json()

    assert introspect()["active"] is True
    risk.remediation_policy_save(actor=w.ga, enabled=True, min_level=RiskLevel.MEDIUM)
    risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=B)
    assert Agent.objects.get(pk=w.agent.pk).status == "active"  # below the threshold
    assert introspect()["active"] is True

    risk.record_detection(agent=w.agent, kind=DetectionKind.REQUEST_BURST, level=RiskLevel.MEDIUM, key="minute")

    agent = Agent.objects.get(pk=w.agent.pk)
    assert (agent.status, agent.disabled_by) == ("disabled", "system")
    assert introspect() == {"active": False}
    assert AccessToken.objects.get(agent=agent).revoked_at is not None
    disable = AuditEvent.objects.filter(action="agent.disable", target_id=str(agent.pk)).get()
    assert disable.actor_kind == "system" and "automatic risk remediation at medium" in disable.after["reason"]
    assert _token(client, w.agent, secret).status_code != 200  # and it gets no new token


def test_r21_turning_remediation_on_remediates_agents_already_at_risk(registry_world):
    w = registry_world
    risk.record_detection(agent=w.agent, kind=DetectionKind.REQUEST_BURST, level=RiskLevel.HIGH, key="m")
    assert Agent.objects.get(pk=w.agent.pk).status == "active"  # no policy yet
    risk.remediation_policy_save(actor=w.inherited, enabled=True, min_level=RiskLevel.HIGH)
    assert risk.evaluate_risk()["remediated"] == 1
    assert Agent.objects.get(pk=w.agent.pk).status == "disabled"
    assert risk.evaluate_risk()["remediated"] == 0


def test_r21_remediation_policy_is_for_admins_validated_and_audited(registry_world):
    w = registry_world
    for refused in (w.owner, w.contributor):
        with pytest.raises(PermissionDenied):
            risk.remediation_policy_save(actor=refused, enabled=True, min_level=RiskLevel.HIGH)
    for bad in (RiskLevel.NONE, "severe", ""):
        with pytest.raises(ValidationError, match="low, medium or high"):
            risk.remediation_policy_save(actor=w.ga, enabled=True, min_level=bad)
    assert not RiskRemediationPolicy.objects.exists()
    assert risk.remediation_policy().enabled is False

    risk.remediation_policy_save(actor=w.ga, enabled=True, min_level=RiskLevel.HIGH)
    risk.remediation_policy_save(actor=w.inherited, enabled=False, min_level=RiskLevel.MEDIUM)
    policy = RiskRemediationPolicy.objects.get()
    assert (policy.enabled, policy.min_level, policy.updated_by) == (False, RiskLevel.MEDIUM, w.inherited)
    events = list(AuditEvent.objects.filter(action="risk.remediation_policy").order_by("id"))
    assert [e.after for e in events] == [{"enabled": True, "min_level": "high"},
                                         {"enabled": False, "min_level": "medium"}]
    assert events[1].before == {"enabled": True, "min_level": "high"}


def test_r21_brute_force_locks_the_attackers_address_only_and_raises_medium_risk(client, registry_world, settings,
                                                                                 fresh_rate_window):
    """Anyone who knows a client id can fail on purpose: the lock-out holds the client id at the failing address
    only, so the agent itself, elsewhere, keeps getting tokens; and failures alone never make the risk high (high
    risk may disable the agent through remediation)."""
    w = registry_world
    _cred, secret = registry.credential_rotate(actor=None, agent=w.agent)
    attacker, agent_host = "203.0.113.66", "10.0.0.5"
    for attempt in range(1, settings.OAUTH_FAILED_AUTH_LOCK + 1):
        assert _token(client, w.agent, "wrong-secret", ip=attacker).status_code == 401
        if attempt == settings.OAUTH_FAILED_AUTH_RISK:
            detection = _detections(w.agent, DetectionKind.FAILED_CREDENTIALS).get()
            assert detection.level == RiskLevel.MEDIUM
            assert _level(w.agent) == RiskLevel.MEDIUM
    legitimate = _token(client, w.agent, secret, ip=agent_host)
    assert legitimate.status_code == 200, legitimate.content
    locked = _token(client, w.agent, secret, ip=attacker)  # even the right secret, from the locked address
    assert locked.status_code == 401 and locked.json()["error"] == "invalid_client"
    assert SignIn.objects.filter(ip=attacker, reason__contains="locked").count() == 1
    detections = _detections(w.agent, DetectionKind.FAILED_CREDENTIALS)
    assert {d.level for d in detections} == {RiskLevel.MEDIUM}
    assert any(attacker in d.detail and "locked" in d.detail for d in detections)
    assert _level(w.agent) == RiskLevel.MEDIUM
    assert AccessToken.objects.filter(agent=w.agent).count() == 1  # the legitimate one


# --- pages ------------------------------------------------------------------------------------------------------
@pytest.fixture
def risk_world(registry_world):
    w = registry_world
    w.beta_agent = _agent(w, "beta-agent", workspace=w.beta, owner=w.other)
    w.reader = UserFactory(username="reader")
    grant_role(w.reader, "security-reader")
    w.low = risk.record_detection(agent=w.agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=B,
                                  detail="Policy.Read.All granted for the first time")
    w.medium = risk.record_detection(agent=w.agent, kind=DetectionKind.REQUEST_BURST, level=RiskLevel.MEDIUM,
                                     key="2025-01-01T10:00:00+00:00", detail="200 token requests")
    risk.record_detection(agent=w.beta_agent, kind=DetectionKind.ORPHANED_USE, level=RiskLevel.HIGH, key="d")
    return w


def _listed(response) -> set[str]:
    return {agent.name for agent in response.context["page"]}


def test_r21_risky_agents_list_shows_each_reader_what_they_may_see(client, risk_world):
    w = risk_world
    for user in (w.ga, w.inherited, w.reader):
        client.force_login(user)
        response = client.get("/governance/risk/")
        assert response.status_code == 200
        assert _listed(response) == {"matrix-agent", "beta-agent"}
    assert b'action="/governance/risk/remediation/"' not in response.content  # a Security Reader only reads

    client.force_login(w.owner)  # an owner of alpha: alpha's agents, read-only
    response = client.get("/governance/risk/")
    assert _listed(response) == {"matrix-agent"} and not response.context["can_decide"]
    row = response.context["page"][0]
    assert (row.risk_level, row.open_detections) == (RiskLevel.MEDIUM, 2)
    assert client.get(f"/governance/risk/{w.beta_agent.pk}/").status_code == 404

    client.force_login(w.contributor)
    assert client.get("/governance/risk/").status_code == 403
    assert client.get(f"/governance/risk/{w.agent.pk}/").status_code == 403

    client.force_login(w.ga)
    response = client.get("/governance/risk/?level=high")
    assert _listed(response) == {"beta-agent"}
    assert b'action="/governance/risk/remediation/"' in response.content
    response = client.get("/governance/risk/?level=low")
    assert _listed(response) == set() and b"No risky agents" in response.content


def test_r21_risky_agents_list_runs_constant_queries(client, registry_world):
    w = registry_world
    client.force_login(w.ga)
    client.get("/governance/risk/")  # the session's first request does its own bookkeeping

    def queries_with(n: int) -> int:
        for i in range(n - Agent.objects.exclude(risk_level="none").count()):
            agent = _agent(w, f"risky-{n}-{i}")
            risk.record_detection(agent=agent, kind=DetectionKind.NEW_SCOPE, level=RiskLevel.LOW, key=A)
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/governance/risk/")
        assert response.status_code == 200 and len(response.context["page"]) == n
        return len(captured)

    assert queries_with(2) == queries_with(30)


def test_r21_agent_risk_page_lists_detections_with_actions_for_admins(client, risk_world):
    w = risk_world
    client.force_login(w.owner)
    response = client.get(f"/governance/risk/{w.agent.pk}/")
    assert response.status_code == 200
    assert [d.pk for d in response.context["page"]] == [w.medium.pk, w.low.pk]
    assert b"200 token requests" in response.content
    assert b"/compromised/" not in response.content and b"/dismiss/" not in response.content  # read-only
    assert client.post(f"/governance/risk/detections/{w.low.pk}/dismiss/").status_code == 403
    assert client.post(f"/governance/risk/{w.agent.pk}/compromised/", {"reason": "x"}).status_code == 403

    client.force_login(w.ga)
    response = client.get(f"/governance/risk/{w.agent.pk}/")
    assert f'/governance/risk/detections/{w.low.pk}/dismiss/'.encode() in response.content
    assert b"data-confirm=" in response.content and b"Confirm compromised" in response.content
    empty = client.get(f"/governance/risk/{_agent(w, 'quiet-agent').pk}/")
    assert b"No detections" in empty.content


def test_r21_deciding_from_the_page(client, risk_world):
    w = risk_world
    client.force_login(w.inherited)
    response = client.post(f"/governance/risk/detections/{w.medium.pk}/safe/")
    assert response.status_code == 302 and response["Location"] == f"/governance/risk/{w.agent.pk}/"
    assert RiskDetection.objects.get(pk=w.medium.pk).status == DetectionStatus.CONFIRMED_SAFE
    assert _level(w.agent) == RiskLevel.LOW
    again = client.post(f"/governance/risk/detections/{w.medium.pk}/dismiss/", follow=True)
    assert b"already confirmed safe" in again.content  # refused with a message; nothing changed
    assert RiskDetection.objects.get(pk=w.medium.pk).status == DetectionStatus.CONFIRMED_SAFE
    assert client.post(f"/governance/risk/detections/{w.medium.pk}/shrug/").status_code == 404
    assert client.get(f"/governance/risk/detections/{w.medium.pk}/safe/").status_code == 405

    missing = client.post(f"/governance/risk/{w.agent.pk}/compromised/", {"reason": ""}, follow=True)
    assert b"Say why the agent is compromised." in missing.content
    assert not _detections(w.agent, DetectionKind.ADMIN_CONFIRMED).exists()
    client.post(f"/governance/risk/{w.agent.pk}/compromised/", {"reason": "Token replayed from abroad"})
    assert _detections(w.agent, DetectionKind.ADMIN_CONFIRMED).get().detail == "Token replayed from abroad"
    assert _level(w.agent) == RiskLevel.HIGH

    client.force_login(w.other)  # owns beta: alpha's agent is invisible
    assert client.post(f"/governance/risk/detections/{w.low.pk}/dismiss/").status_code == 404


def test_r21_remediation_form(client, risk_world):
    w = risk_world
    client.force_login(w.ga)
    bad = client.post("/governance/risk/remediation/", {"enabled": "on", "min_level": "none"})
    assert bad.status_code == 200 and bad.context["form"].errors["min_level"]
    assert not RiskRemediationPolicy.objects.exists()
    response = client.post("/governance/risk/remediation/", {"enabled": "on", "min_level": "high"}, follow=True)
    assert b"Automatic remediation is on" in response.content
    assert RiskRemediationPolicy.objects.get().enabled is True
    client.force_login(w.owner)
    assert client.post("/governance/risk/remediation/", {"enabled": "off", "min_level": "high"}).status_code == 403
    assert RiskRemediationPolicy.objects.get().enabled is True


# --- demo data --------------------------------------------------------------------------------------------------
def test_r21_demo_step_leaves_a_risky_agent_and_is_idempotent(registry_world):
    from devkit.demo import risk as risk_demo

    w = registry_world
    soc = make_workspace("soc", owners=[w.owner, w.owner_b])
    agent = _agent(w, "ca-drift-hq", workspace=soc)
    lines: list[str] = []
    risk_demo.seed_risk(lines.append)
    assert _level(agent) == RiskLevel.MEDIUM
    assert set(_detections(agent).values_list("kind", flat=True)) == {"new_scope", "request_burst"}
    counts = (RiskDetection.objects.count(), AuditEvent.objects.count())
    risk_demo.seed_risk(lines.append)
    assert (RiskDetection.objects.count(), AuditEvent.objects.count()) == counts
    assert not risk.remediation_policy().enabled
    assert "ca-drift-hq at medium risk" in lines[-1]


def test_r21_the_agent_page_says_when_the_agent_is_at_risk(client, registry_world):
    from governance.risk import services as risk_service

    w = registry_world
    client.force_login(w.owner)
    assert "open detection" not in client.get(f"/agents/{w.agent.pk}/").content.decode()
    risk_service.record_detection(agent=w.agent, kind="new_scope", level="low", key="Mail.Read", detail="new")
    page = client.get(f"/agents/{w.agent.pk}/").content.decode()
    assert "Low risk: 1 open detection." in page and f"/governance/risk/{w.agent.pk}/" in page
