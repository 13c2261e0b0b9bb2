"""Registry pages: the setup wizard, filters, the secret shown once, retirement confirmation, query counts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents.models import Agent, Credential
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _wizard_data(**overrides):
    data = {"name": "wizard-agent", "identity_type": "agent_identity", "scope": "workspace",
            "sponsors": "owner", "owners": "owner_b", "attributes": "tier=1\ndepartment=SOC", "expires_at": ""}
    data.update(overrides)
    return data


def test_r10_wizard_offers_contributors_user_scope_only(client, registry_world):
    w = registry_world
    client.force_login(w.contributor)
    body = client.get(f"/agents/new/{w.blueprint.pk}/").content.decode()
    assert 'value="user"' in body and 'value="workspace"' not in body
    response = client.post(f"/agents/new/{w.blueprint.pk}/", _wizard_data(confirm="1"))
    assert "Select a valid choice" in response.content.decode()
    assert not Agent.objects.filter(name="wizard-agent").exists()


def test_r2_wizard_offers_an_agent_identity_only_for_microsoft_blueprints(client, registry_world):
    partner = make_blueprint("PartnerThing", publisher_kind="partner", permissions=())
    client.force_login(registry_world.owner)
    body = client.get(f"/agents/new/{partner.pk}/").content.decode()
    assert 'value="agent_identity"' not in body and 'value="user_account"' in body


def test_wizard_reviews_then_creates_and_shows_the_secret_once(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    review = client.post(f"/agents/new/{w.blueprint.pk}/", _wizard_data())
    assert "Review and create" in review.content.decode()
    assert not Agent.objects.filter(name="wizard-agent").exists()  # the review step writes nothing
    created = client.post(f"/agents/new/{w.blueprint.pk}/", _wizard_data(confirm="1"))
    agent = Agent.objects.get(name="wizard-agent")
    assert created.status_code == 302 and created["Location"] == f"/agents/{agent.pk}/secret/"
    shown = client.get(created["Location"])
    body = shown.content.decode()
    assert "no-store" in shown["Cache-Control"] and 'id="client-secret"' in body
    secret = body.split('id="client-secret" class="user-select-all">')[1].split("<")[0]
    assert Credential.objects.get(identity__agent=agent).secret_hash != secret
    assert {a.key: a.value for a in agent.attributes.all()} == {"tier": "1", "department": "SOC"}
    detail = client.get(f"/agents/{agent.pk}/").content.decode()
    assert secret not in detail and secret[:10] in detail  # only the prefix is ever shown again


def test_wizard_shows_rule_errors_next_to_the_fields(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    body = client.post(f"/agents/new/{w.blueprint.pk}/", _wizard_data(name="matrix-agent")).content.decode()
    assert "already exists" in body
    body = client.post(f"/agents/new/{w.blueprint.pk}/",
                       _wizard_data(expires_at="2001-01-01T00:00")).content.decode()
    assert "must be in the future" in body


def test_an_incomplete_blueprint_cannot_be_set_up(client, registry_world):
    incomplete = make_blueprint("Unfinished", complete=False)
    spec = agent_spec(incomplete, "x", sponsors=[registry_world.owner], owners=[registry_world.owner])
    with pytest.raises(registry.ProvisioningError, match="does not know"):
        registry.agent_create(actor=registry_world.owner, workspace=registry_world.alpha, spec=spec)


def test_registry_filters(client, registry_world):
    w = registry_world
    soon = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "expiring-soon", sponsors=[w.newcomer], owners=[w.owner], attributes={"tier": "0"},
        expires_at=timezone.now() + timedelta(days=3))).agent
    registry.agent_disable(actor=w.owner, agent=soon)
    client.force_login(w.owner)

    def names(query: str) -> set[str]:
        body = client.get(f"/agents/?{query}").content.decode()
        return {a.name for a in Agent.objects.all() if f'data-agent="{a.name}"' in body}

    assert names("") == {"matrix-agent", "expiring-soon"}
    assert names("status=disabled") == {"expiring-soon"}
    assert names("sponsor=newcomer") == {"expiring-soon"}
    assert names("owner=owner_b") == {"matrix-agent"}
    assert names("attribute=tier%3D0") == {"expiring-soon"}
    assert names("expiring=1") == {"expiring-soon"}
    assert names("q=expiring") == {"expiring-soon"}
    assert names("identity_type=user_account") == set()
    assert "No agent matches these filters" in client.get("/agents/?q=nothing-like-this").content.decode()


def test_retire_confirmation_lists_exactly_what_will_end(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    body = client.get(f"/agents/{w.agent.pk}/retire/").content.decode()
    prefix = Credential.objects.get(identity__agent=w.agent).prefix
    assert "irreversible" in body and prefix in body and "User.Read.All" in body
    assert Agent.objects.get(pk=w.agent.pk).status == "active"  # asking changes nothing


def test_agent_list_runs_a_constant_number_of_queries(client, registry_world):
    w = registry_world
    client.force_login(w.owner)

    def count() -> int:
        client.get("/agents/")
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/agents/").status_code == 200
        return len(ctx.captured_queries)

    registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=[
        agent_spec(w.blueprint, f"ten-{i}", sponsors=[w.owner], owners=[w.owner_b]) for i in range(9)])
    small = count()
    registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=[
        agent_spec(w.blueprint, f"many-{i}", sponsors=[w.owner], owners=[w.owner_b]) for i in range(990)])
    assert Agent.objects.filter(workspace=w.alpha).count() == 1000
    assert count() == small == AGENT_LIST_QUERIES


AGENT_LIST_QUERIES = 15  # incl. the header counters (portal.navigation): one COUNT; last used: the watermark, then one
