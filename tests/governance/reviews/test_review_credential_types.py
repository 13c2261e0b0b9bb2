"""Access reviews show how each reviewed agent authenticates (R19 with R28): client secret, key, federated
credential — on the reviewer's page, the results page, the API and the CSV export, read in a fixed number of queries
whatever the number of items."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from jwt.algorithms import ECAlgorithm

from agents import registry, trust
from agents.models import Agent, Credential
from governance.access import services as ap
from governance.reviews.campaigns import review_create
from governance.reviews.selectors import credential_types
from portal.models import Permission
from tests.factories import agent_spec

pytestmark = pytest.mark.django_db

ISSUER = "https://token.actions.githubusercontent.com"


def _package(w):
    return ap.package_save(actor=w.owner, workspace=w.alpha, name="Responder",
                           policy={"approver_kind": "none", "justification_required": False},
                           permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All",
                                                                 kind="application"))


def _agents(w, count: int, prefix: str) -> list[Agent]:
    specs = [agent_spec(w.blueprint, f"{prefix}-{i}", sponsors=[w.owner], owners=[w.owner_b]) for i in range(count)]
    return [p.agent for p in registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=specs)]


def _key(w, agent):
    trust.key_credential_add(actor=w.owner, agent=agent, jwk=ECAlgorithm.to_jwk(
        ec.generate_private_key(ec.SECP256R1()).public_key(), as_dict=True))


def _federated_only(w, agent, subject: str):
    trust.federated_credential_add(actor=w.owner, agent=agent, issuer=ISSUER, subject=subject, audience="portal")
    for credential in Credential.objects.filter(identity__agent=agent, revoked_at__isnull=True):
        registry.credential_revoke(actor=w.owner, credential=credential)


@pytest.fixture
def reviewed(registry_world):
    """A package review over three agents: one on a secret, one with a secret and a key, one federated only."""
    w = registry_world
    w.package = _package(w)
    w.secret, w.keyed, w.federated = _agents(w, 3, "cred")
    _key(w, w.keyed)
    _federated_only(w, w.federated, "repo:org/cred:ref")
    for agent in (w.secret, w.keyed, w.federated):
        ap.assignment_request(actor=w.owner, package=w.package, agent=agent)
    w.campaign = review_create(actor=w.owner, workspace=w.alpha, packages=[w.package], name="Quarterly",
                               scope_kind="packages", reviewer_kind="sponsors",
                               starts_at=timezone.now() - timedelta(hours=1), duration_days=7)
    return w


EXPECTED = {"cred-0": "secret", "cred-1": "secret key", "cred-2": "federated"}


def test_r28_access_reviews_show_each_agents_credential_types(client, reviewed):
    w = reviewed
    assert credential_types([w.secret.pk, w.keyed.pk, w.federated.pk]) == {
        w.secret.pk: ["secret"], w.keyed.pk: ["secret", "key"], w.federated.pk: ["federated"]}
    assert {agent.pk: sorted(trust.credential_types(agent)) for agent in (w.secret, w.keyed, w.federated)} == {
        w.secret.pk: ["secret"], w.keyed.pk: ["key", "secret"], w.federated.pk: ["federated"]}

    client.force_login(w.owner)
    # The reviewer's page.
    mine = client.get(f"/governance/reviews/{w.campaign.pk}/review/")
    assert {item.agent.name: " ".join(item.credential_types) for item in mine.context["page"]} == EXPECTED
    body = mine.content.decode()
    assert 'data-credential-types="secret key"' in body and "federated credential" in body
    # The API.
    listed = client.get(f"/api/v1/reviews/{w.campaign.pk}/decisions/").json()
    assert {i["agent"]: " ".join(i["credential_types"]) for i in listed} == EXPECTED
    item = w.campaign.instances.get().items.get(agent=w.federated)
    decided = client.post(f"/api/v1/reviews/{w.campaign.pk}/decisions/", {"item": item.pk, "decision": "approve"},
                          content_type="application/json")
    assert decided.status_code == 200 and decided.json()["credential_types"] == ["federated"]
    # The results page and its export.
    results = client.get(f"/governance/reviews/{w.campaign.pk}/results/")
    assert {i.agent.name: " ".join(i.credential_types) for i in results.context["page"]} == EXPECTED
    export = client.get(f"/governance/reviews/{w.campaign.pk}/results.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert {r["agent"]: r["credential_types"] for r in rows} == EXPECTED

    # A retired agent authenticates with nothing, whatever its blueprint trusts.
    registry.agent_retire(actor=w.owner, agent=w.keyed)
    assert credential_types([w.keyed.pk]) == {w.keyed.pk: []}


def test_r28_review_pages_read_credential_types_in_a_fixed_number_of_queries(client, registry_world):
    w = registry_world
    package = _package(w)
    trust.federated_credential_add(actor=w.ga, blueprint=w.blueprint, issuer=ISSUER, subject="repo:org/*",
                                   subject_is_pattern=True, audience="portal")

    def count(n: int) -> tuple[int, int, int]:
        agents = _agents(w, n, f"fleet{n}")
        for index, agent in enumerate(agents):
            if index % 2:
                _key(w, agent)
            ap.assignment_request(actor=w.owner, package=package, agent=agent)
        campaign = review_create(actor=w.owner, workspace=w.alpha, packages=[package], name=f"R{n}",
                                 scope_kind="packages", reviewer_kind="sponsors",
                                 starts_at=timezone.now() - timedelta(hours=1), duration_days=7)
        client.force_login(w.owner)
        counts = []
        for url in (f"/governance/reviews/{campaign.pk}/review/", f"/governance/reviews/{campaign.pk}/results/",
                    f"/api/v1/reviews/{campaign.pk}/decisions/"):
            client.get(url)
            with CaptureQueriesContext(connection) as queries:
                response = client.get(url)
            assert response.status_code == 200
            counts.append(len(queries))
        return tuple(counts)

    assert count(2) == count(9)
