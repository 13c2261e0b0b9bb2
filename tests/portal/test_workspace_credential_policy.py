"""A workspace policy "no new client secrets" (R28): its owners (explicit or inherited) turn it on; while it is on,
no secret is rotated or issued for the workspace's agents — rotation is refused and changes nothing, set-up gives
a dedicated identity no secret — and the agents authenticate with keys or federated credentials instead."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from jwt.algorithms import ECAlgorithm

from agents import registry, trust
from agents.models import Agent, AgentIdentity, Credential
from portal import workspaces
from portal.models import AuditEvent, Workspace
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db


def _forbid(w, actor=None, forbid=True) -> Workspace:
    return workspaces.workspace_forbid_new_secrets_set(actor=actor or w.owner, workspace=w.alpha, forbid=forbid)


def test_r28_a_workspace_that_forbids_new_secrets_refuses_rotation_and_provisioning_secrets(registry_world):
    w = registry_world
    agent = w.agent
    assert Credential.objects.filter(identity__agent=agent).count() == 1  # set up before the policy: one secret

    # Only its owners (and inherited owners) set the policy; each change is one audit event, a repeat none.
    with pytest.raises(PermissionDenied):
        _forbid(w, actor=w.contributor)
    with pytest.raises(PermissionDenied):
        _forbid(w, actor=w.other)
    events = AuditEvent.objects.filter(action="workspace.credential_policy")
    assert _forbid(w).forbid_new_secrets is True
    assert _forbid(w).forbid_new_secrets is True
    assert [(e.actor_id, e.before, e.after) for e in events] == [
        (w.owner.pk, {"credential_policy": "any credential"}, {"credential_policy": "no new client secrets"})]

    # Rotation is refused with a clear message, and nothing changes.
    secrets_before = list(Credential.objects.filter(identity__agent=agent).values_list("pk", "expires_at"))
    audit_before = AuditEvent.objects.count()
    for actor in (w.owner, w.ga, None):
        with pytest.raises(ValidationError, match="Alpha forbids new client secrets: add a key or a federated "
                                                  "credential to matrix-agent instead"):
            registry.credential_rotate(actor=actor, agent=agent)
    assert list(Credential.objects.filter(identity__agent=agent).values_list("pk", "expires_at")) == secrets_before
    assert AuditEvent.objects.count() == audit_before

    # An agent set up now (alone or in a bulk file) gets its identity but no secret; a key is how it signs in.
    created = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "keyed-agent", sponsors=[w.owner], owners=[w.owner_b]))
    assert created.client_id and created.client_secret == ""
    assert AgentIdentity.objects.filter(agent=created.agent).exists()
    assert not Credential.objects.filter(identity__agent=created.agent).exists()
    bulk = registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=[
        agent_spec(w.blueprint, f"bulk-{i}", sponsors=[w.owner], owners=[w.owner_b]) for i in range(3)])
    assert [p.client_secret for p in bulk] == ["", "", ""]
    assert not Credential.objects.filter(identity__agent__in=[p.agent for p in bulk]).exists()
    key = trust.key_credential_add(actor=w.owner, agent=created.agent, jwk=ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True))
    assert key.is_active()
    assert sorted(trust.credential_types(created.agent)) == ["key"]

    # Another workspace is not affected; turned off again, secrets are issued again.
    beta_agent = registry.agent_create(actor=w.other, workspace=w.beta, spec=agent_spec(
        w.blueprint, "beta-agent", sponsors=[w.other], owners=[w.other_b]))
    assert beta_agent.client_secret
    _forbid(w, actor=w.inherited, forbid=False)
    _credential, secret = registry.credential_rotate(actor=w.owner, agent=created.agent)
    assert secret


def test_r28_the_credential_policy_is_set_on_the_members_page(client, registry_world):
    w = registry_world
    url = reverse("workspace-credential-policy", args=["alpha"])
    client.force_login(w.owner)
    page = client.get(reverse("workspace-members", args=["alpha"])).content.decode()
    assert 'data-forbid-new-secrets="off"' in page and f'action="{url}"' in page
    response = client.post(url, {"forbid_new_secrets": "on"}, follow=True)
    assert response.status_code == 200
    assert "New client secrets are forbidden in Alpha." in response.content.decode()
    assert Workspace.objects.get(slug="alpha").forbid_new_secrets is True
    assert 'data-forbid-new-secrets="on"' in response.content.decode()
    # The refusal reaches the agent page's rotate button as a message, not an error page.
    rotated = client.post(reverse("agent-credential-rotate", args=[w.agent.pk]), follow=True)
    assert rotated.status_code == 200 and "forbids new client secrets" in rotated.content.decode()
    # A contributor sees the policy but cannot change it.
    client.force_login(w.contributor)
    page = client.get(reverse("workspace-members", args=["alpha"])).content.decode()
    assert 'data-forbid-new-secrets="on"' in page and f'action="{url}"' not in page
    assert client.post(url, {"forbid_new_secrets": "off"}).status_code == 403
    assert Workspace.objects.get(slug="alpha").forbid_new_secrets is True
    # The API shows it.
    client.force_login(w.owner)
    assert client.get("/api/v1/workspaces/alpha/").json()["forbid_new_secrets"] is True


def test_r28_the_wizard_says_no_secret_will_be_issued_and_leads_to_the_credentials_page(client, registry_world):
    w = registry_world
    data = {"name": "keyless-agent", "identity_type": "agent_identity", "scope": "workspace", "sponsors": "owner",
            "owners": "owner_b", "attributes": "", "expires_at": ""}
    client.force_login(w.owner)
    before = client.get(reverse("agent-setup-blueprint", args=[w.blueprint.pk])).content.decode()
    assert "data-no-secret" not in before
    with_secret = client.post(reverse("agent-setup-blueprint", args=[w.blueprint.pk]), {**data, "confirm": "1"},
                              follow=True)
    assert 'id="client-secret"' in with_secret.content.decode()
    credentials_url = reverse("agent-credentials", args=[Agent.objects.get(name="keyless-agent").pk])
    assert f'href="{credentials_url}"' in with_secret.content.decode()  # the key or federated path, offered
    _forbid(w)
    data["name"] = "keyless-agent-2"
    page = client.get(reverse("agent-setup-blueprint", args=[w.blueprint.pk])).content.decode()
    assert "No secret will be issued." in page and "add a key or federated credential" in page
    review = client.post(reverse("agent-setup-blueprint", args=[w.blueprint.pk]), data).content.decode()
    assert "No secret will be issued" in review and "client secret (shown once)" not in review
    created = client.post(reverse("agent-setup-blueprint", args=[w.blueprint.pk]), {**data, "confirm": "1"})
    agent = Agent.objects.get(name="keyless-agent-2")
    assert created.status_code == 302 and created["Location"] == reverse("agent-credentials", args=[agent.pk])
    assert not Credential.objects.filter(identity__agent=agent).exists()
    landing = client.get(created["Location"]).content.decode()
    assert "No secret was issued to keyless-agent-2: add a key or a federated credential" in landing
    assert 'id="federated-form"' in landing and 'id="key-form"' in landing
