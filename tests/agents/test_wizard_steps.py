"""The set-up wizard without JavaScript: each step posts the whole form; "Run as user account" is shown only once
that identity is chosen, and a step's problems are all listed at once on the first step that has one."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_run_as_user_appears_after_continue_without_javascript_and_all_problems_show_at_once(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    url = f"/agents/new/{w.blueprint.pk}/"
    first = client.get(url).content.decode()
    assert 'aria-current="step"><span class="wizard-step-number">2</span> Identity' in first
    assert 'data-show-for="user_account" hidden' in first  # an agent identity is offered first

    page = client.post(url, {"step": "2", "go": "next", "name": "", "identity_type": "user_account",
                             "run_as_user": "", "scope": "workspace", "sponsors": "owner", "owners": "owner"})
    body = page.content.decode()
    assert 'data-show-for="user_account" hidden' not in body and 'data-show-for="user_account"' in body
    assert "Identity — Name: This field is required." in body
    assert "Identity — Run as user account: Choose the user account the agent runs as." in body

    page = client.post(url, {"step": "2", "go": "next", "name": "steps-agent", "identity_type": "agent_identity",
                             "scope": "workspace", "sponsors": "owner", "owners": "owner"})
    body = page.content.decode()
    assert 'aria-current="step"><span class="wizard-step-number">3</span> Scope' in body
    assert 'name="name" value="steps-agent"' in body  # the answers ride along
    assert "wizard-problems" not in body


def test_the_wizard_names_the_workspace_not_its_slug(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    page = client.post(f"/agents/new/{w.blueprint.pk}/", {
        "name": "matrix-agent", "identity_type": "agent_identity", "scope": "workspace", "sponsors": "owner",
        "owners": "owner_b"}).content.decode()
    assert f"already exists in {w.alpha.name}" in page and "already exists in alpha" not in page
    assert 'aria-current="step"><span class="wizard-step-number">2</span> Identity' in page  # back where it is
