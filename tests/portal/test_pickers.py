"""Pickers: one endpoint per kind (people, agents) answers the options matching what was typed, only among what the
asker may see; the pages use them as search-as-you-type fields that still work as plain, checked text inputs."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from agents import registry
from agents.forms import AgentSetupForm
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


def _options(response) -> list[str]:
    assert response.status_code == 200
    return re.findall(r'<option value="([^"]+)">', response.content.decode())


def test_people_picker_offers_only_people_of_workspaces_the_asker_sees(client, world):
    UserFactory(username="owlbert")  # in no workspace: only directory managers and inherited owners find them
    client.force_login(world.contributor)
    assert _options(client.get(reverse("picker-people"), {"q": "ow"}, secure=True)) == ["owner", "owner_b"]
    assert _options(client.get(reverse("picker-people"), {"q": "oth"}, secure=True)) == []  # beta's people
    assert _options(client.get(reverse("picker-people"), {"field": "sponsor", "sponsor": "owner_"},
                               secure=True)) == ["owner_b"]  # htmx sends the field under its own name
    client.force_login(world.ga)
    assert "owlbert" in _options(client.get(reverse("picker-people"), {"q": "ow"}, secure=True))
    assert _options(client.get(reverse("picker-people"), {"q": ""}, secure=True)) == []


def test_agent_picker_offers_only_agents_the_asker_sees(client, registry_world):
    world = registry_world
    registry.agent_create(actor=world.other, workspace=world.beta, spec=agent_spec(
        make_blueprint("BetaAgent", permissions=("User.Read.All",)), "matrix-beta", sponsors=[world.other],
        owners=[world.other]))
    client.force_login(world.owner)
    assert _options(client.get(reverse("picker-agents"), {"q": "matrix"}, secure=True)) == ["matrix-agent"]
    client.force_login(world.other)
    assert _options(client.get(reverse("picker-agents"), {"q": "matrix"}, secure=True)) == ["matrix-beta"]


def test_people_fields_are_pickers_with_a_plain_input_underneath(client, registry_world):
    world = registry_world
    client.force_login(world.owner)
    html = client.get(reverse("agent-list"), secure=True).content.decode()
    for field in ("f-sponsor", "f-owner", "bulk-sponsor"):
        tag = re.search(rf'<input[^>]+id="{field}"[^>]*>', html).group(0)
        assert f'list="{field}-options"' in tag and f'hx-get="{reverse("picker-people")}"' in tag
        assert f'<datalist id="{field}-options">' in html
    detail = client.get(reverse("agent-detail", args=[world.agent.pk]), secure=True).content.decode()
    assert 'id="person-user" name="user"' in detail and 'data-picker="people"' in detail


def test_picker_fields_fall_back_to_plain_inputs_the_form_checks(client, world):
    """Without JavaScript a picker is a text input whose names the form checks like any other; the wizard takes the
    separators the bulk file takes."""
    form = AgentSetupForm(data={"name": "plain", "identity_type": "agent_identity", "scope": "workspace",
                                "sponsors": "owner; owner_b,", "owners": "nobody-here"})
    assert not form.is_valid()
    assert [u.username for u in form.cleaned_data["sponsors"]] == ["owner", "owner_b"]
    assert form.errors["owners"] == ["No user is called 'nobody-here'."]
    html = str(form["sponsors"])
    assert 'type="text"' in html and 'data-multiple="; "' in html and 'hx-get="/pickers/people/"' in html
