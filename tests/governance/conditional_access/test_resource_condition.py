"""Conditional access by resource (R20 with R26): a policy's condition "the resource is one of …", evaluated at the
token endpoint from the audience asked for, shown in the policy list, the editor and what-if."""

from __future__ import annotations

import base64

import pytest
from django.urls import reverse

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.signin import tokens
from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db

TICKETS = "https://tickets.example.test"


def _token(client, agent, **data):
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    basic = base64.b64encode(f"{credential.identity.client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token/", {"grant_type": "client_credentials", **data},
                       HTTP_AUTHORIZATION=f"Basic {basic}")


@pytest.fixture
def tickets(registry_world):
    tokens.resource_server_create(actor=None, name="Tickets", identifier=TICKETS, scopes="User.Read.All")
    return registry_world


def _block_tickets(actor, state="on"):
    return conditional_access.policy_save(actor=actor, data={
        "name": "No tickets for agents", "state": state, "grant": "block", "all_agents": True,
        "resources": [TICKETS]})


def test_r20_a_policy_can_target_a_resource(client, tickets, settings):
    w = tickets
    _block_tickets(w.ga)
    blocked = _token(client, w.agent, resource=TICKETS)
    assert blocked.status_code == 400 and blocked.json()["error"] == "invalid_grant", blocked.content
    row = SignIn.objects.filter(agent=w.agent).latest("at")
    assert row.outcome == "blocked" and row.resource == TICKETS
    assert row.policies[0]["name"] == "No tickets for agents" and row.policies[0]["outcome"] == "block"
    # The same agent still gets a token for the portal API: named or not.
    assert _token(client, w.agent).status_code == 200
    assert _token(client, w.agent, resource=settings.PORTAL_BASE_URL).status_code == 200
    # An allow policy limited to the portal API blocks every other resource for the agents it targets.
    ConditionalAccessPolicy.objects.all().delete()
    conditional_access.policy_save(actor=w.ga, data={
        "name": "Portal API only", "state": "on", "grant": "allow", "all_agents": True,
        "resources": [settings.PORTAL_BASE_URL]})
    assert _token(client, w.agent).status_code == 200
    refused = _token(client, w.agent, resource=TICKETS)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
    assert SignIn.objects.filter(agent=w.agent).latest("at").outcome == "blocked"


def test_r20_resource_condition_report_only_records_without_blocking(client, tickets):
    _block_tickets(tickets.ga, state="report_only")
    assert _token(client, tickets.agent, resource=TICKETS).status_code == 200
    row = SignIn.objects.filter(agent=tickets.agent).latest("at")
    assert row.outcome == "success" and row.policies[0]["outcome"] == "block"


def test_r20_resource_condition_in_the_editor_and_the_list(client, tickets):
    client.force_login(tickets.ga)
    response = client.post(reverse("policy-create"), {
        "name": "Tickets", "state": "report_only", "grant": "block", "all_agents": "on",
        "resources": f"{TICKETS}\n{TICKETS}\n"})
    assert response.status_code == 302, response.content
    policy = ConditionalAccessPolicy.objects.get(name="Tickets")
    assert policy.resources == [TICKETS]
    assert TICKETS in client.get(reverse("policy-list")).content.decode()
    assert TICKETS in client.get(reverse("policy-edit", args=[policy.pk])).content.decode()
    bad = client.post(reverse("policy-edit", args=[policy.pk]), {
        "name": "Tickets", "state": "report_only", "grant": "block", "all_agents": "on", "resources": "tickets"})
    assert bad.status_code == 200
    policy.refresh_from_db()
    assert policy.resources == [TICKETS]


def test_r20_what_if_shows_the_resource(client, tickets, settings):
    w = tickets
    _block_tickets(w.ga)
    client.force_login(w.ga)
    url = reverse("policy-what-if")
    for_tickets = client.get(url, {"agent": w.agent.name, "resource": TICKETS}).content.decode()
    assert f'id="what-if-resource">{TICKETS}<' in for_tickets and "<strong>blocked</strong>" in for_tickets
    for_portal = client.get(url, {"agent": w.agent.name}).content.decode()
    assert f'id="what-if-resource">{settings.PORTAL_BASE_URL}<' in for_portal
    assert "<strong>allowed</strong>" in for_portal
    assert "is not one of" in for_portal  # the verdict says why the policy did not apply
