"""The sign-in log shows how each client authenticated (R28): the credential type (client secret, key, federated
credential) and a federated credential's issuer, on the page, as a filter, and in the export; the page's query
count stays constant."""

from __future__ import annotations

import csv
import io
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import registry
from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db

ISSUER = "https://kubernetes.default.svc"


def _rows(agent, count: int, **fields) -> list[SignIn]:
    values = {"agent": agent, "client_id": agent.identity.client_id, "actor_kind": "agent", "outcome": "success",
              "ip": "10.0.0.1", "grant_type": "client_credentials", "granted_scopes": ["User.Read.All"], **fields}
    return SignIn.objects.bulk_create([SignIn(**values) for _ in range(count)])


@pytest.fixture
def logged(registry_world):
    w = registry_world
    w.secret_row = _rows(w.agent, 1, credential_type="secret")[0]
    w.key_row = _rows(w.agent, 1, credential_type="key")[0]
    w.federated_row = _rows(w.agent, 1, credential_type="federated", credential_issuer=ISSUER)[0]
    w.unknown_row = _rows(w.agent, 1, outcome="failure", error="invalid_client")[0]
    return w


def test_r28_the_sign_in_log_shows_and_filters_by_credential_type(client, logged):
    w = logged
    client.force_login(w.owner)
    body = client.get("/governance/sign-ins/").content.decode()
    assert '<th scope="col">Credential</th>' in body
    for row, label in ((w.secret_row, "Client secret"), (w.key_row, "Key (private_key_jwt)"),
                       (w.federated_row, "Federated credential")):
        cell = body.split(f'data-signin="{row.pk}"')[1].split("</tr>")[0]
        assert f'data-credential-type="{row.credential_type}"' in cell and label in cell
    federated = body.split(f'data-signin="{w.federated_row.pk}"')[1].split("</tr>")[0]
    assert ISSUER in federated

    def shown(query: str) -> set[int]:
        response = client.get(f"/governance/sign-ins/?{query}")
        assert response.status_code == 200
        return {row.pk for row in response.context["page"]}

    assert shown("credential_type=federated") == {w.federated_row.pk}
    assert shown("credential_type=secret") == {w.secret_row.pk}
    assert shown("credential_type=key&outcome=success") == {w.key_row.pk}
    assert shown("credential_type=password") == set()  # not a choice: the invalid filter matches nothing


def test_r28_the_sign_in_export_holds_the_credential_type_and_issuer(client, logged):
    w = logged
    client.force_login(w.ga)
    response = client.get("/governance/sign-ins/export/?format=json&credential_type=federated")
    items = json.loads(b"".join(response.streaming_content))
    assert [(i["id"], i["credential_type"], i["credential_issuer"]) for i in items] == [
        (w.federated_row.pk, "federated", ISSUER)]
    response = client.get("/governance/sign-ins/export/?format=csv")
    rows = {int(r["id"]): r for r in csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode()))}
    assert (rows[w.key_row.pk]["credential_type"], rows[w.key_row.pk]["credential_issuer"]) == ("key", "")
    assert rows[w.unknown_row.pk]["credential_type"] == ""


def test_r28_a_real_token_request_records_the_secret_it_used(client, registry_world):
    w = registry_world
    _credential, secret = registry.credential_rotate(actor=None, agent=w.agent)
    response = client.post("/oauth/token/", {"grant_type": "client_credentials",
                                             "client_id": w.agent.identity.client_id, "client_secret": secret})
    assert response.status_code == 200, response.content
    row = SignIn.objects.filter(agent=w.agent).latest("at")
    assert (row.credential_type, row.credential_issuer) == ("secret", "")
    client.force_login(w.owner)
    assert row.pk in {r.pk for r in client.get("/governance/sign-ins/?credential_type=secret").context["page"]}


def test_r28_the_filtered_log_page_runs_a_constant_number_of_queries(client, registry_world):
    w = registry_world

    def count(rows: int) -> int:
        _rows(w.agent, rows, credential_type="federated", credential_issuer=ISSUER)
        client.force_login(w.owner)
        client.get("/governance/sign-ins/?credential_type=federated")
        with CaptureQueriesContext(connection) as queries:
            assert client.get("/governance/sign-ins/?credential_type=federated").status_code == 200
        return len(queries)

    assert count(3) == count(120)
