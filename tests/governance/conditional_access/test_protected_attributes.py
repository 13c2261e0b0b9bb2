"""R20, protected attributes: an owner cannot move their agent out of a policy that targets a custom security
attribute. A key any policy matches on is protected even outside a protected set; what-if shows each attribute's
set and protection."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import PermissionDenied

from agents import attributes, registry
from agents.models import AttributeValue
from governance.conditional_access import services as conditional_access
from governance.signin.models import AccessToken
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db
RESTRICTED = [{"key": "tier", "op": "equals", "value": "restricted"}]


def _token(client, agent):
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    basic = base64.b64encode(f"{credential.identity.client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}",
                       REMOTE_ADDR="127.0.0.1")


@pytest.fixture
def blocked(registry_world):
    """A block policy on ``tier equals restricted`` and the registry's agent assigned tier=restricted by a Global
    Administrator."""
    w = registry_world
    conditional_access.policy_save(actor=w.ga, data={"name": "Block restricted agents", "state": "on",
                                                     "grant": "block", "attribute_rules": RESTRICTED})
    registry.agent_attribute_set(actor=w.ga, agent=w.agent, key="tier", value="restricted")
    return w


@pytest.mark.parametrize("with_protected_set", [False, True], ids=["key-named-by-the-policy", "governance-set"])
def test_r20_owner_cannot_flip_the_attribute_a_block_policy_targets_and_the_token_stays_refused(
        client, blocked, with_protected_set):
    w = blocked
    if with_protected_set:
        attributes.attribute_set_save(actor=w.ga, name="Governance", protected=True, keys=["tier"])
    assert _token(client, w.agent).status_code == 400
    with pytest.raises(PermissionDenied, match="tier is a protected attribute"):
        registry.agent_attribute_set(actor=w.owner_b, agent=w.agent, key="tier", value="unrestricted")
    with pytest.raises(PermissionDenied):
        registry.agent_attribute_remove(actor=w.owner_b, agent=w.agent, key="tier")
    client.force_login(w.owner)
    assert client.post(f"/agents/{w.agent.pk}/attributes/", {"key": "tier", "value": "unrestricted"}).status_code \
        == 403
    client.logout()
    refused = _token(client, w.agent)
    assert refused.status_code == 400 and "Block restricted agents" in refused.json()["error_description"]
    assert AccessToken.objects.count() == 0
    assert AttributeValue.objects.get(agent=w.agent, key="tier").value == "restricted"


def test_r20_a_key_a_policy_matches_on_is_protected_outside_any_set_whatever_the_policy_state(registry_world):
    w = registry_world
    assert not attributes.attribute_protection(["tier"])["tier"].protected
    conditional_access.policy_save(actor=w.ga, data={"name": "Later", "state": "off", "grant": "block",
                                                     "attribute_rules": RESTRICTED})
    protection = attributes.attribute_protection(["tier", "team"])
    assert protection["tier"].protected and protection["tier"].policies == ("Later",)
    assert protection["tier"].attribute_set == "" and not protection["team"].protected
    assert attributes.protected_keys() == ["tier"]


def test_r20_the_assigners_change_the_targeted_attribute_and_the_next_token_follows(client, blocked):
    w = blocked
    registry.agent_attribute_set(actor=w.ga, agent=w.agent, key="tier", value="standard")
    event = AuditEvent.objects.filter(action="agent.attribute_set").latest("id")
    assert (event.before, event.after) == ({"tier": "restricted"}, {"tier": "standard"})
    assert _token(client, w.agent).status_code == 200


def test_r20_what_if_shows_each_attribute_with_its_set_and_protection(client, blocked):
    w = blocked
    attributes.attribute_set_save(actor=w.ga, name="Governance", protected=True, keys=["tier"])
    registry.agent_attribute_set(actor=w.owner, agent=w.agent, key="team", value="blue")
    client.force_login(w.owner)
    page = client.get("/governance/policies/what-if/", {"agent": "matrix-agent"}).content.decode()
    assert "<strong>blocked</strong>" in page
    table = page.split('id="what-if-attributes"', 1)[1]
    tier = table.split('data-key="tier"', 1)[1].split("</tr>", 1)[0]
    team = table.split('data-key="team"', 1)[1].split("</tr>", 1)[0]
    assert "restricted" in tier and "Governance" in tier and "protected" in tier
    assert "Block restricted agents" in tier  # the policy that matches on it
    assert "blue" in team and "none" in team and "the agent's owners" in team
