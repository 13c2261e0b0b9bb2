"""R31: high-impact changes wait for a second administrator; break-glass acts at once and is reviewed afterwards
(docs/four-eyes.md).

The shared test settings switch every kind off (tests/conftest.py); these tests turn kinds on in the organisation's
settings row, as a Global Administrator would.
"""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from agents import bulk_actions, catalog, registry
from agents.choices import AgentStatus, PublisherKind
from agents.models import Agent, Publisher, Skill, Skillset
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.oauth import registration
from governance.oauth.choices import ClientApproval, ClientSource
from governance.oauth.client_metadata import parse
from governance.risk import services as risk
from governance.risk.models import RiskRemediationPolicy
from governance.signin import tokens
from governance.signin.models import ResourceServer
from portal import changes
from portal.choices import ChangeState
from portal.models import AuditEvent, ChangeRequest, Notification
from tests.factories import UserFactory, agent_spec, grant_role, make_blueprint

BLOCK_ALL = {"name": "Block every agent", "state": "on", "grant": "block", "all_agents": True}


def _on(world, *kinds, threshold: int = 10):
    changes.settings_save(actor=world.ga, high_impact={kind: True for kind in kinds}, bulk_retire_threshold=threshold)


def _second_ga(name: str = "ga2"):
    user = UserFactory(username=name)
    grant_role(user, "global-administrator")
    return user


def _skill():
    publisher, _ = Publisher.objects.get_or_create(name="Microsoft", defaults={"kind": PublisherKind.MICROSOFT})
    skillset = Skillset.objects.create(name="Entra", publisher=publisher)
    return Skill.objects.create(skillset=skillset, name="GetEntraAuditLogs")


def _agents(world, n: int) -> list[Agent]:
    blueprint = make_blueprint("FourEyesAgent", permissions=("User.Read.All",))
    return [registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprint, f"four-eyes-{i}", sponsors=[world.owner], owners=[world.owner_b])).agent for i in range(n)]


def _pending_client(settings):
    settings.OAUTH_REGISTRATION_WORKSPACE = "alpha"
    return registration.client_register(actor=None, source=ClientSource.DYNAMIC, metadata=parse({
        "client_name": "Four-eyes client", "redirect_uris": ["https://app.example.test/cb"],
        "token_endpoint_auth_method": "none"})).client


# --- each kind is gated ------------------------------------------------------------------------------------------


def test_r31_turning_a_block_policy_on_for_every_agent_waits_for_a_second_administrator(world):
    _on(world, conditional_access.BLOCK_ALL_CHANGE)
    change = conditional_access.policy_save(actor=world.ga, data=BLOCK_ALL)
    assert changes.is_pending(change)
    assert not ConditionalAccessPolicy.objects.exists()
    assert AuditEvent.objects.filter(action="change.request", target_id=str(change.pk)).count() == 1
    # a block policy for named agents, or one in report-only, is not high-impact: it applies at once
    saved = conditional_access.policy_save(actor=world.ga, data={**BLOCK_ALL, "name": "Later",
                                                                  "state": "report_only"})
    assert isinstance(saved, ConditionalAccessPolicy)
    changes.change_approve(actor=world.inherited, change=change)
    # ... and turning that report-only one on is high-impact too
    waiting = conditional_access.policy_save(actor=world.ga, data={"state": "on"}, policy=saved)
    assert changes.is_pending(waiting)
    saved.refresh_from_db()
    assert saved.state == "report_only"


def test_r31_an_approved_policy_is_applied_as_asked_by_the_approver(world):
    _on(world, conditional_access.BLOCK_ALL_CHANGE)
    change = conditional_access.policy_save(actor=world.ga, data=BLOCK_ALL)
    change, policy = changes.change_approve(actor=world.inherited, change=change)
    assert change.state == ChangeState.APPROVED and change.decided_by == world.inherited
    policy = ConditionalAccessPolicy.objects.get(name="Block every agent")
    assert policy.state == "on" and policy.all_agents and policy.grant == "block"
    assert AuditEvent.objects.filter(action="policy.create", actor=world.inherited).count() == 1
    assert AuditEvent.objects.filter(action="change.approve", target_id=str(change.pk)).count() == 1
    assert Notification.objects.filter(recipient=world.ga, subject__startswith="Change approved").count() == 1


def test_r31_changing_the_skill_map_waits_for_a_second_administrator(world):
    _on(world, catalog.SKILL_MAP_CHANGE)
    skill = _skill()
    change = catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=["AuditLog.Read.All"])
    assert changes.is_pending(change) and not skill.permissions.exists()
    changes.change_approve(actor=world.ga, change=change)
    assert list(skill.permissions.values_list("name", flat=True)) == ["AuditLog.Read.All"]


def test_r31_retiring_more_agents_than_the_threshold_waits_and_fewer_apply_at_once(world):
    _on(world, bulk_actions.BULK_RETIRE_CHANGE, threshold=2)
    agents = _agents(world, 3)
    change = bulk_actions.agents_bulk_apply(actor=world.ga, agents=agents, action="retire")
    assert changes.is_pending(change)
    assert Agent.objects.filter(status=AgentStatus.RETIRED).count() == 0
    assert bulk_actions.agents_bulk_apply(actor=world.ga, agents=agents[:2], action="disable") == 2
    changes.change_approve(actor=world.inherited, change=change)
    assert Agent.objects.filter(pk__in=[a.pk for a in agents], status=AgentStatus.RETIRED).count() == 3


def test_r31_changing_risk_remediation_waits_for_a_second_administrator(world):
    _on(world, risk.REMEDIATION_CHANGE)
    change = risk.remediation_policy_save(actor=world.inherited, enabled=True, min_level="medium")
    assert changes.is_pending(change)
    assert not RiskRemediationPolicy.objects.filter(enabled=True).exists()
    changes.change_approve(actor=world.ga, change=change)
    assert RiskRemediationPolicy.objects.get().enabled is True


def test_r31_registering_a_resource_server_waits_and_the_approver_sees_the_secret_once(world, client):
    _on(world, tokens.RESOURCE_SERVER_CHANGE)
    client.force_login(world.ga)
    response = client.post(reverse("resource-server-list"), {"name": "Tickets", "identifier":
                                                             "https://tickets.example.test", "scopes": "tickets.read"})
    change = ChangeRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("change-detail", args=[change.pk])
    assert not ResourceServer.objects.exists()
    page = client.get(response["Location"])
    assert "This change waits for a second administrator" in page.content.decode()
    client.force_login(world.inherited)
    applied = client.post(reverse("change-approve", args=[change.pk]))
    server = ResourceServer.objects.get()
    assert applied.status_code == 200 and "no-store" in applied["Cache-Control"]
    assert server.client_id in applied.content.decode() and 'id="shown-once-secret"' in applied.content.decode()
    assert server.identifier == "https://tickets.example.test" and server.scopes == ["tickets.read"]


def test_r31_approving_a_client_application_waits_for_a_second_administrator(world, settings):
    _on(world, registration.CLIENT_APPROVE_CHANGE)
    oauth_client = _pending_client(settings)
    change = registration.client_approve(actor=world.owner, client=oauth_client)
    assert changes.is_pending(change)
    oauth_client.refresh_from_db()
    assert oauth_client.approval == ClientApproval.PENDING
    changes.change_approve(actor=world.ga, change=change)
    oauth_client.refresh_from_db()
    assert oauth_client.approval == ClientApproval.APPROVED and oauth_client.decided_by == world.ga


# --- deciding ------------------------------------------------------------------------------------------------------


def test_r31_the_requester_cannot_approve_reject_or_review_their_own_change(world, client):
    _on(world, risk.REMEDIATION_CHANGE)
    change = risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high")
    with pytest.raises(PermissionDenied, match="you cannot approve it yourself"):
        changes.change_approve(actor=world.ga, change=change)
    with pytest.raises(PermissionDenied):
        changes.change_reject(actor=world.ga, change=change, reason="changed my mind")
    client.force_login(world.ga)
    response = client.post(reverse("change-approve", args=[change.pk]))
    assert response.status_code == 403 and "another administrator must" in response.content.decode()
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING and not RiskRemediationPolicy.objects.filter(enabled=True).exists()


def test_r31_a_non_administrator_cannot_approve_and_sees_only_their_own_requests(world, client):
    _on(world, catalog.SKILL_MAP_CHANGE)
    change = catalog.skill_set_permissions(actor=world.owner, skill=_skill(), permissions=["AuditLog.Read.All"])
    with pytest.raises(PermissionDenied):
        changes.change_approve(actor=world.owner_b, change=change)
    client.force_login(world.owner_b)
    assert client.get(reverse("change-detail", args=[change.pk])).status_code == 404
    client.force_login(world.owner)
    assert client.get(reverse("change-detail", args=[change.pk])).status_code == 200


def test_r31_a_rejected_change_is_never_applied_and_needs_a_reason(world):
    _on(world, risk.REMEDIATION_CHANGE)
    change = risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high")
    with pytest.raises(ValidationError, match="reason"):
        changes.change_reject(actor=world.inherited, change=change, reason="  ")
    changes.change_reject(actor=world.inherited, change=change, reason="Not during the audit")
    change.refresh_from_db()
    assert change.state == ChangeState.REJECTED and change.decision_note == "Not during the audit"
    with pytest.raises(ValidationError, match="no longer waiting"):
        changes.change_approve(actor=world.inherited, change=change)
    assert not RiskRemediationPolicy.objects.filter(enabled=True).exists()


def test_r31_bad_input_is_refused_at_once_and_nothing_waits(world):
    _on(world, risk.REMEDIATION_CHANGE, tokens.RESOURCE_SERVER_CHANGE)
    with pytest.raises(ValidationError):
        risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="catastrophic")
    with pytest.raises(PermissionDenied):
        risk.remediation_policy_save(actor=world.owner, enabled=True, min_level="high")
    with pytest.raises(ValidationError):
        tokens.resource_server_create(actor=world.ga, name="Bad", identifier="not a uri")
    assert not ChangeRequest.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="risk.").exists()


def test_r31_the_approver_must_be_allowed_the_change_itself(world):
    """The applier re-checks its own rules as the approver: a Privileged Role Administrator is an administrator
    but does not manage conditional access."""
    _on(world, conditional_access.BLOCK_ALL_CHANGE)
    change = conditional_access.policy_save(actor=world.ga, data=BLOCK_ALL)
    pra = UserFactory(username="pra")
    grant_role(pra, "privileged-role-administrator")
    with pytest.raises(PermissionDenied):
        changes.change_approve(actor=pra, change=change)
    change.refresh_from_db()
    assert change.state == ChangeState.PENDING and not ConditionalAccessPolicy.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_r31_two_administrators_approving_at_once_apply_the_change_exactly_once(postgres, catalog):
    """Two connections approve the same request at the same moment: the row lock lets one through; the other finds
    it decided. PostgreSQL only (SQLite serialises writers by locking the whole database): it fails in CI
    (REQUIRE_SERVICES=1) without PostgreSQL, as every such test does."""
    requester, first, second = _second_ga("requester"), _second_ga("first"), _second_ga("second")
    changes.settings_save(actor=requester, high_impact={risk.REMEDIATION_CHANGE: True}, bulk_retire_threshold=10)
    for attempt in range(3):
        change = risk.remediation_policy_save(actor=requester, enabled=attempt % 2 == 0, min_level="high")
        barrier, outcomes = threading.Barrier(2), []

        def approve(approver, change=change, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait(timeout=10)
                changes.change_approve(actor=approver, change=change)
                outcomes.append("approved")
            except ValidationError as error:
                outcomes.append(" ".join(error.messages))
            finally:
                connection.close()

        threads = [threading.Thread(target=approve, args=(user,)) for user in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(outcomes) == 2 and outcomes.count("approved") == 1, outcomes
        assert any("no longer waiting" in outcome for outcome in outcomes), outcomes
        assert AuditEvent.objects.filter(action="change.approve", target_id=str(change.pk)).count() == 1
        assert AuditEvent.objects.filter(action="risk.remediation_policy").count() == attempt + 1


# --- break-glass ---------------------------------------------------------------------------------------------------


def test_r31_break_glass_applies_at_once_tells_every_ga_and_opens_a_review(world):
    _on(world, conditional_access.BLOCK_ALL_CHANGE)
    ga2 = _second_ga()
    policy = conditional_access.policy_save(actor=world.inherited, data=BLOCK_ALL, break_glass=True,
                                            justification="Stolen credentials in use right now")
    assert isinstance(policy, ConditionalAccessPolicy) and policy.state == "on"
    change = ChangeRequest.objects.get()
    assert change.state == ChangeState.APPLIED_BREAK_GLASS and change.break_glass
    event = AuditEvent.objects.get(action="change.break_glass")
    assert event.after["break_glass"] is True and event.after["justification"].startswith("Stolen")
    told = set(Notification.objects.filter(subject__startswith="Emergency change").values_list("recipient_id",
                                                                                                 flat=True))
    assert told == {world.ga.pk, ga2.pk}
    # the one who acted cannot review it; another administrator must, and a flag needs a note
    with pytest.raises(PermissionDenied):
        changes.change_review(actor=world.inherited, change=change, verdict="confirm")
    with pytest.raises(ValidationError, match="when you flag"):
        changes.change_review(actor=world.ga, change=change, verdict="flag")
    changes.change_review(actor=world.ga, change=change, verdict="confirm", note="Right call")
    change.refresh_from_db()
    assert change.state == ChangeState.REVIEWED and change.decided_by == world.ga and not change.review_flagged
    assert AuditEvent.objects.filter(action="change.review", target_id=str(change.pk)).count() == 1


def test_r31_break_glass_needs_a_justification_and_an_administrator(world):
    _on(world, risk.REMEDIATION_CHANGE, catalog.SKILL_MAP_CHANGE)
    with pytest.raises(ValidationError, match="cannot wait"):
        risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high", break_glass=True,
                                     justification=" ")
    with pytest.raises(PermissionDenied, match="Only an administrator"):
        catalog.skill_set_permissions(actor=world.owner, skill=_skill(), permissions=["AuditLog.Read.All"],
                                      break_glass=True, justification="in a hurry")
    assert not ChangeRequest.objects.exists()
    assert not RiskRemediationPolicy.objects.filter(enabled=True).exists()


def test_r31_an_emergency_change_is_listed_first_until_reviewed(world, client):
    _on(world, risk.REMEDIATION_CHANGE)
    risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high", break_glass=True,
                                 justification="Active incident")
    change = ChangeRequest.objects.get(state=ChangeState.APPLIED_BREAK_GLASS)
    client.force_login(world.inherited)
    page = client.get(reverse("change-list")).content.decode()
    assert 'id="change-reviews"' in page and f'data-change="{change.pk}"' in page
    response = client.post(reverse("change-review", args=[change.pk]), {"verdict": "flag", "note": "Too wide"})
    assert response.status_code == 302
    change.refresh_from_db()
    assert change.state == ChangeState.REVIEWED and change.review_flagged
    assert 'id="change-reviews"' not in client.get(reverse("change-list")).content.decode()


# --- settings ------------------------------------------------------------------------------------------------------


def test_r31_a_kind_switched_off_applies_at_once(world):
    changes.settings_save(actor=world.ga, high_impact={risk.REMEDIATION_CHANGE: False,
                                                       conditional_access.BLOCK_ALL_CHANGE: True},
                          bulk_retire_threshold=10)
    saved = risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high")
    assert isinstance(saved, RiskRemediationPolicy) and saved.enabled
    assert changes.is_pending(conditional_access.policy_save(actor=world.ga, data=BLOCK_ALL))
    assert AuditEvent.objects.filter(action="change.settings").count() == 1


def test_r31_only_global_administrators_change_the_settings(world, client):
    with pytest.raises(PermissionDenied):
        changes.settings_save(actor=world.inherited, high_impact={}, bulk_retire_threshold=5)
    client.force_login(world.ga)
    fields = {f"kind_{spec.name}": "on" for spec in changes.kinds() if spec.name != risk.REMEDIATION_CHANGE}
    response = client.post(reverse("four-eyes-settings"), {**fields, "bulk_retire_threshold": "25"})
    assert response.status_code == 302
    assert changes.bulk_retire_threshold() == 25
    assert changes.is_high_impact(conditional_access.BLOCK_ALL_CHANGE)
    assert not changes.is_high_impact(risk.REMEDIATION_CHANGE)


def test_r31_by_default_every_kind_is_high_impact_and_the_command_still_prints_credentials(world, settings):
    """Unchosen, each kind takes its own default (all on). The system (a command run by an operator) is outside
    four-eyes, so ``register_resource_server`` prints the client id and secret as before."""
    settings.FOUR_EYES_DEFAULT_KINDS = None
    assert all(changes.high_impact_map().values()) and len(changes.high_impact_map()) >= 6
    out = StringIO()
    call_command("register_resource_server", "Billing", identifier="https://billing.example.test", stdout=out,
                 stderr=StringIO())
    assert "client_id: rs-" in out.getvalue() and "client_secret: " in out.getvalue()
    assert changes.is_pending(risk.remediation_policy_save(actor=world.ga, enabled=True, min_level="high"))


def test_r31_the_pending_message_and_break_glass_fields_are_on_the_gated_forms(world, client):
    _on(world, risk.REMEDIATION_CHANGE)
    client.force_login(world.ga)
    page = client.get(reverse("risk-list")).content.decode()
    assert 'name="break_glass"' in page and 'name="justification"' in page
    response = client.post(reverse("risk-remediation"), {"enabled": "on", "min_level": "high"}, follow=True)
    assert "This change waits for a second administrator" in response.content.decode()


def test_r31_the_api_lists_approves_and_refuses_self_approval(world, client):
    _on(world, tokens.RESOURCE_SERVER_CHANGE)
    change = tokens.resource_server_create(actor=world.ga, name="Ledger", identifier="https://ledger.example.test")
    client.force_login(world.ga)
    listed = client.get(reverse("api-change-list")).json()
    assert [row["id"] for row in listed["results"]] == [change.pk] and listed["results"][0]["state"] == "pending"
    assert client.post(reverse("api-change-approve", args=[change.pk])).status_code == 403
    client.force_login(world.inherited)
    answer = client.post(reverse("api-change-approve", args=[change.pk]))
    assert answer.status_code == 200 and answer.json()["state"] == "approved"
    assert answer.json()["secret"] and ResourceServer.objects.get().name == "Ledger"
    again = client.post(reverse("api-change-approve", args=[change.pk]))
    assert again.status_code in (400, 409)
