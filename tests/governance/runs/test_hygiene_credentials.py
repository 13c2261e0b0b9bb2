"""The hygiene agent and credential types (R28): an agent whose only way to authenticate is a client secret is a
finding, with the way out (a federated credential) one click away on the run page; an agent with a key or a
federated credential, its own or its blueprint's, is not. The facts behind it are read in a fixed number of
queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from jwt.algorithms import ECAlgorithm

from agents import registry, trust
from agents.models import Agent, Credential
from governance.runs import builtin as builtin_agents
from governance.runs.builtin import facts as agent_facts
from governance.runs.builtin import hygiene
from governance.runs.models import Run
from governance.runs.portal_client import PortalClient
from governance.signin.models import AccessToken, SignIn
from tests.factories import accept_sponsorships, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

ISSUER = "https://token.actions.githubusercontent.com"
SECRET_ONLY = ("authenticates only with a client secret (1 active secret): add a federated credential (or a key) so "
               "it keeps no secret, then revoke the secret")


def _agent(w, name, blueprint=None):
    """An agent of alpha with two sponsors (both accepted: R30), in use today: nothing to report but its
    credentials."""
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint or make_blueprint(f"{name}-bp".title().replace("-", ""), permissions=("User.Read.All",)), name,
        sponsors=[w.owner, w.owner_b], owners=[w.owner])).agent
    accept_sponsorships(agent)
    SignIn.objects.create(agent=agent, client_id="x", actor_kind="agent", outcome="success",
                          granted_scopes=["User.Read.All"])
    # ... and its permission used: a token carrying it introspected today (docs/design.md, "Usage").
    now = timezone.now()
    AccessToken.objects.create(token_hash=f"in-use-{agent.pk}", agent=agent, client_id="x", scopes=["User.Read.All"],
                               issued_at=now, expires_at=now + timedelta(hours=1), last_used_at=now)
    return agent


def _public_jwk() -> dict:
    return ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True)


@pytest.fixture
def hygiene_run(world):
    """The hygiene agent set up in alpha, and a function running it through the API with a real token."""
    blueprints = {b.name: b for b in builtin_agents.install()}
    created = registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        blueprints["AgentHygieneAgent"], "agent-hygiene", sponsors=[world.owner, world.owner_b],
        owners=[world.owner]))
    accept_sponsorships(created.agent)
    # The hygiene agent itself authenticates with a key, so it is not among its own findings.
    trust.key_credential_add(actor=world.owner, agent=created.agent, jwk=_public_jwk())

    def run(client):
        response = client.post("/oauth/token/", {"grant_type": "client_credentials",
                                                 "client_id": created.client_id,
                                                 "client_secret": created.client_secret})
        assert response.status_code == 200, response.content
        record = Run.objects.create(agent=created.agent, trigger="schedule", status="succeeded", inputs={})
        with PortalClient(response.json()["access_token"]) as portal:
            output = hygiene.execute(portal, record)
        Run.objects.filter(pk=record.pk).update(summary=output.summary, findings=output.findings)
        record.refresh_from_db()
        return record, output

    return run


def test_r28_the_hygiene_agent_reports_agents_still_on_a_secret_until_they_get_a_federated_credential(
        client, world, hygiene_run):
    w = world
    on_secret = _agent(w, "on-secret")
    keyed = _agent(w, "keyed")
    trust.key_credential_add(actor=w.owner, agent=keyed, jwk=_public_jwk())
    shared = make_blueprint("FederatedByDefault", permissions=("User.Read.All",))
    trust.federated_credential_add(actor=w.ga, blueprint=shared, issuer=ISSUER, subject="repo:org/app:*",
                                   subject_is_pattern=True, audience="portal")
    by_blueprint = _agent(w, "by-blueprint", blueprint=shared)
    expired = _agent(w, "expired-secret")
    past = timezone.now() - timedelta(days=100)
    Credential.objects.filter(identity__agent=expired).update(created_at=past, expires_at=past + timedelta(days=99))

    run, output = hygiene_run(client)
    got = [(f["agent"], f["kind"], f["level"], f["action"], f["detail"]) for f in output.findings]
    assert got == [
        ("expired-secret", "credential_expired", "medium", "rotate", got[0][4]),
        ("on-secret", "secret_only", "low", "add_federated_credential", SECRET_ONLY),
    ]
    assert output.findings[1]["agent_id"] == on_secret.pk
    assert {keyed.name, by_blueprint.name}.isdisjoint(f["agent"] for f in output.findings)

    # The run page links the finding to the agent's "add a federated credential" page (no Apply button for it).
    client.force_login(w.owner)
    page = client.get(reverse("run-detail", args=[run.pk])).content.decode()
    link = reverse("agent-federated-credential-add", args=[on_secret.pk])
    assert f'href="{link}"' in page
    assert reverse("run-apply", args=[run.pk, 1]) not in page
    with pytest.raises(ValidationError, match="nothing to apply"):
        hygiene.apply(w.owner, run, output.findings[1], {})

    # Once it has a federated credential of its own, the next run no longer lists it.
    trust.federated_credential_add(actor=w.owner, agent=on_secret, issuer=ISSUER, subject="repo:org/on-secret:ref",
                                   audience="portal")
    _run, again = hygiene_run(client)
    assert [(f["agent"], f["kind"]) for f in again.findings] == [("expired-secret", "credential_expired")]


def test_r28_a_revoked_key_or_federated_credential_counts_for_nothing(world):
    w = world
    agent = _agent(w, "revoked")
    key = trust.key_credential_add(actor=w.owner, agent=agent, jwk=_public_jwk())
    rule = trust.federated_credential_add(actor=w.owner, agent=agent, issuer=ISSUER, subject="repo:org/x:ref",
                                          audience="portal")
    assert [f.kind for f in hygiene.findings(Agent.objects.filter(pk=agent.pk))] == []
    trust.key_credential_revoke(actor=w.owner, credential=key)
    assert [f.kind for f in hygiene.findings(Agent.objects.filter(pk=agent.pk))] == []
    trust.federated_credential_revoke(actor=w.owner, credential=rule)
    assert [f.kind for f in hygiene.findings(Agent.objects.filter(pk=agent.pk))] == ["secret_only"]


def test_r28_credential_facts_are_read_in_a_fixed_number_of_queries(world):
    blueprint = make_blueprint("Fleet", permissions=("User.Read.All",))
    trust.federated_credential_add(actor=world.ga, blueprint=blueprint, issuer=ISSUER, subject="repo:org/fleet:*",
                                   subject_is_pattern=True, audience="portal")

    def count(n: int) -> int:
        for i in range(n):
            agent = _agent(world, f"fleet-{n}-{i}", blueprint=blueprint if i % 2 else None)
            trust.key_credential_add(actor=world.owner, agent=agent, jwk=_public_jwk())
            trust.federated_credential_add(actor=world.owner, agent=agent, issuer=ISSUER,
                                           subject=f"repo:org/{n}-{i}:ref", audience="portal")
        with CaptureQueriesContext(connection) as queries:
            found = agent_facts.facts(Agent.objects.filter(name__startswith=f"fleet-{n}-"),
                                      sections=[agent_facts.CREDENTIALS], now=timezone.now())
        assert len(found) == n
        assert all(len(item["key_credentials"]) == 1 for item in found)
        assert sum(len(item["federated_credentials"]) for item in found) == n + n // 2  # own + blueprint's
        return len(queries)

    assert count(3) == count(12) == 5
