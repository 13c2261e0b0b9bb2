"""Who reads which agent names in conditional-access policies (R20): every reader sees every policy, but the agents a
policy names only as far as the reader sees agents; an agent's own token within its reach (R13)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from agents import registry
from governance.conditional_access import services as conditional_access
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

HIDDEN = "beta-secret-agent"


@pytest.fixture
def named(registry_world):
    """A policy naming alpha's agent and beta's, and one for every agent except beta's."""
    w = registry_world
    blueprint = make_blueprint("BetaAgent", permissions=("Policy.Read.All",))
    w.beta_agent = registry.agent_create(actor=w.other, workspace=w.beta, spec=agent_spec(
        blueprint, HIDDEN, sponsors=[w.other], owners=[w.other_b])).agent
    conditional_access.policy_save(actor=w.ga, data={"name": "Named agents", "state": "report_only",
                                                     "grant": "block"}, agents=[w.agent, w.beta_agent])
    conditional_access.policy_save(actor=w.ga, data={"name": "Everyone but one", "state": "report_only",
                                                     "grant": "block", "all_agents": True},
                                   excluded_agents=[w.beta_agent])
    return w


def _pages(client, w) -> dict[str, str]:
    named_policy = conditional_access.ConditionalAccessPolicy.objects.get(name="Named agents")
    return {
        "list": client.get(reverse("policy-list")).content.decode(),
        "what-if": client.get(reverse("policy-what-if"), {"agent": "matrix-agent", "ip": "10.0.0.1"}).content.decode(),
        "api list": client.get("/api/v1/policies/").content.decode(),
        "api detail": client.get(f"/api/v1/policies/{named_policy.pk}/").content.decode(),
    }


def test_r20_an_owner_sees_no_agent_name_of_another_workspace_in_policies(client, named):
    client.force_login(named.owner)
    pages = _pages(client, named)
    assert all(HIDDEN not in page for page in pages.values()), [k for k, page in pages.items() if HIDDEN in page]
    assert "Named agents" in pages["list"] and "Everyone but one" in pages["list"]  # every policy, still
    assert "matrix-agent" in pages["list"] and "matrix-agent" in pages["api detail"]  # their own agent's name, still
    assert "and 1 named agent of workspaces you do not see" in pages["list"]
    assert json.loads(pages["api detail"])["agents"] == ["matrix-agent"]


@pytest.mark.parametrize("persona", ["inherited", "ga"])
def test_r20_inherited_owners_and_global_administrators_see_every_named_agent(client, named, persona):
    client.force_login(getattr(named, persona))
    pages = _pages(client, named)
    assert HIDDEN in pages["list"] and HIDDEN in pages["api list"] and HIDDEN in pages["api detail"]
    assert "workspaces you do not see" not in pages["list"]


def test_r13_an_agents_own_token_reads_the_policy_names_of_its_own_workspace(client, named):
    created = registry.agent_create(actor=named.owner, workspace=named.alpha, spec=agent_spec(
        make_blueprint("PolicyReader", permissions=("Policy.Read.All",)), "policy-reader",
        sponsors=[named.owner], owners=[named.owner_b]))
    token = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": created.client_id,
                                          "client_secret": created.client_secret}).json()["access_token"]
    body = client.get("/api/v1/policies/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    by_name = {p["name"]: p for p in body["results"]}
    assert set(by_name) == {"Named agents", "Everyone but one"}
    assert by_name["Named agents"]["agents"] == ["matrix-agent"]
    assert by_name["Everyone but one"]["excluded_agents"] == []
