"""R28 services: key credentials and federated credentials (agents.trust) and the add_credential command."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from agents import registry, trust
from agents.models import FederatedCredential, KeyCredential
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db

ISSUER = "https://oidc.cluster.example"
SUBJECT = "system:serviceaccount:agents:matrix-agent"


def _ec():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(private) -> str:
    return private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def test_r28_a_pem_becomes_the_same_public_jwk(registry_world):
    w = registry_world
    private = _ec()
    from_pem = trust.key_credential_add(actor=w.owner, agent=w.agent, pem=_pem(private))
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    assert set(from_pem.public_jwk) == {"kty", "crv", "x", "y"}
    assert from_pem.thumbprint == trust.thumbprint(jwk) and len(from_pem.thumbprint) == 43
    with pytest.raises(ValidationError, match="already registered"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, jwk=jwk)


def test_r28_private_keys_and_weak_keys_are_refused(registry_world):
    w = registry_world
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValidationError, match="private key"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, jwk=json.loads(RSAAlgorithm.to_jwk(private)))
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    with pytest.raises(ValidationError, match="private key"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, pem=pem)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValidationError, match="2048"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, pem=_pem(weak))
    with pytest.raises(ValidationError):
        trust.key_credential_add(actor=w.owner, agent=w.agent, jwk="not a key")
    assert not KeyCredential.objects.exists()


def test_r28_only_owners_manage_keys_and_one_audit_event_names_no_key(registry_world):
    w = registry_world
    with pytest.raises(PermissionDenied):
        trust.key_credential_add(actor=w.contributor, agent=w.agent, pem=_pem(_ec()))
    credential = trust.key_credential_add(actor=w.inherited, agent=w.agent, pem=_pem(_ec()))
    event = AuditEvent.objects.get(action="agent.key_credential_add")
    assert event.after["thumbprint"] == credential.thumbprint
    assert credential.public_jwk["x"] not in json.dumps(event.after)
    trust.key_credential_revoke(actor=w.owner, credential=credential)
    assert AuditEvent.objects.filter(action="agent.key_credential_revoke").count() == 1


def test_r28_keys_rotate_with_overlap(registry_world):
    w = registry_world
    old = trust.key_credential_add(actor=w.owner, agent=w.agent, pem=_pem(_ec()))
    new = trust.key_credential_add(actor=w.owner, agent=w.agent, pem=_pem(_ec()))
    old.refresh_from_db()
    assert old.is_active() and new.is_active()
    assert set(trust.active_keys(w.agent)) == {old, new}


def test_r28_jwks_uri_on_allowed_hosts_only(registry_world, settings):
    w = registry_world
    settings.OAUTH_KEY_JWKS_ALLOWED_HOSTS = ["keys.example"]
    with pytest.raises(ValidationError, match="not an allowed host"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, jwks_uri="https://elsewhere.example/jwks")
    with pytest.raises(ValidationError, match="https"):
        trust.key_credential_add(actor=w.owner, agent=w.agent, jwks_uri="http://keys.example/jwks")
    credential = trust.key_credential_add(actor=w.owner, agent=w.agent, jwks_uri="https://keys.example/jwks")
    assert credential.public_jwk is None and credential.kid == "*"


def test_r28_pattern_subject_only_when_an_administrator_adds_it(registry_world):
    w = registry_world
    with pytest.raises(PermissionDenied):
        trust.federated_credential_add(actor=w.owner, agent=w.agent, issuer=ISSUER,
                                       subject="system:serviceaccount:agents:*", audience="portal",
                                       subject_is_pattern=True)
    rule = trust.federated_credential_add(actor=w.inherited, agent=w.agent, issuer=ISSUER,
                                          subject="system:serviceaccount:agents:*", audience="portal",
                                          subject_is_pattern=True)
    assert rule.subject_is_pattern
    with pytest.raises(ValidationError, match="besides wildcards"):
        trust.federated_credential_add(actor=w.ga, agent=w.agent, issuer=ISSUER, subject="*", audience="portal",
                                       subject_is_pattern=True)


def test_r28_blueprint_defaults_are_for_administrators_and_count_for_its_agents(registry_world):
    w = registry_world
    with pytest.raises(PermissionDenied):
        trust.federated_credential_add(actor=w.owner, blueprint=w.blueprint, issuer=ISSUER, subject=SUBJECT,
                                       audience="portal")
    assert "federated" not in trust.credential_types(w.agent)
    trust.federated_credential_add(actor=w.ga, blueprint=w.blueprint, issuer=ISSUER, subject=SUBJECT,
                                   audience="portal")
    assert "federated" in trust.credential_types(w.agent)


def test_r28_rules_refuse_bad_input(registry_world, settings):
    w = registry_world
    settings.OAUTH_ALLOW_LOOPBACK_HTTP = False
    for issuer in ("http://oidc.example", "https://10.0.0.1/", "not a url", "https://user:pw@oidc.example"):
        with pytest.raises(ValidationError):
            trust.federated_credential_add(actor=w.owner, agent=w.agent, issuer=issuer, subject=SUBJECT,
                                           audience="portal")
    with pytest.raises(ValidationError):
        trust.federated_credential_add(actor=w.owner, agent=w.agent, issuer=ISSUER, subject="a\x00b",
                                       audience="portal")
    assert not FederatedCredential.objects.exists()


def test_r5_r28_retirement_leaves_no_credential_behind(registry_world):
    w = registry_world
    trust.key_credential_add(actor=w.owner, agent=w.agent, pem=_pem(_ec()))
    trust.federated_credential_add(actor=w.owner, agent=w.agent, issuer=ISSUER, subject=SUBJECT, audience="portal")
    assert trust.credential_types(w.agent) >= {"key", "federated"}
    counts = registry.agent_retire(actor=w.owner, agent=w.agent)
    assert counts["key_credentials_revoked"] == 1 and counts["federated_credentials_revoked"] == 1
    assert not KeyCredential.objects.filter(revoked_at__isnull=True).exists()
    assert not FederatedCredential.objects.filter(revoked_at__isnull=True).exists()
    assert trust.credential_types(w.agent) == set()


def test_r28_add_credential_command(registry_world, tmp_path):
    w = registry_world
    key_file = tmp_path / "agent.pem"
    key_file.write_text(_pem(_ec()))
    out = StringIO()
    call_command("add_credential", "matrix-agent", "--workspace", "alpha", "--jwk", str(key_file), stdout=out)
    assert KeyCredential.objects.get(pk=int(out.getvalue())).identity.agent == w.agent
    out = StringIO()
    call_command("add_credential", "matrix-agent", "--workspace", "alpha", "--federated", "--issuer", ISSUER,
                 "--subject", SUBJECT, "--audience", "portal", stdout=out)
    assert FederatedCredential.objects.get(pk=int(out.getvalue())).agent == w.agent


def test_r28_add_credential_command_refuses_private_keys_and_bad_input(registry_world, tmp_path):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "private.pem"
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    with pytest.raises(CommandError, match="private key"):
        call_command("add_credential", "matrix-agent", "--workspace", "alpha", "--jwk", str(key_file))
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("add_credential", "matrix-agent", "--workspace", "alpha", "--jwk", str(tmp_path / "none"))
    with pytest.raises(CommandError, match="--audience"):
        call_command("add_credential", "matrix-agent", "--workspace", "alpha", "--federated", "--issuer", ISSUER,
                     "--subject", SUBJECT)
    with pytest.raises(CommandError, match="No agent"):
        call_command("add_credential", "nobody", "--workspace", "alpha", "--federated", "--issuer", ISSUER,
                     "--subject", SUBJECT, "--audience", "portal")
    assert not KeyCredential.objects.exists() and not FederatedCredential.objects.exists()


def test_r28_bulk_file_adds_keys_and_federated_credentials(registry_world):
    from agents import bulk
    from agents.registry import ProvisioningError

    w = registry_world
    jwk = json.dumps(ECAlgorithm.to_jwk(_ec().public_key(), as_dict=True))
    rows = [{"blueprint": "MatrixAgent", "name": "bulk-keyed", "identity_type": "agent_identity",
             "scope": "workspace", "sponsors": ["owner"], "owners": ["owner"], "public_jwk": json.loads(jwk),
             "federated_issuer": ISSUER, "federated_subject": SUBJECT, "federated_audience": "portal"}]
    result = bulk.provision_file(actor=w.owner, workspace=w.alpha, stream=json.dumps(rows), filename="a.json")
    agent = result.created[0].agent
    assert trust.credential_types(agent) == {"secret", "key", "federated"}
    csv_text = ("blueprint,name,identity_type,scope,sponsors,owners,public_jwk,federated_issuer\n"
                "MatrixAgent,bulk-bad,agent_identity,workspace,owner,owner,not-a-key,https://x.example\n")
    with pytest.raises(ProvisioningError) as refused:
        bulk.provision_file(actor=w.owner, workspace=w.alpha, stream=csv_text, filename="b.csv")
    columns = {column for _row, column, _message in refused.value.problems}
    assert {"public_jwk", "federated_subject"} <= columns


def test_r28_blueprint_defaults_on_the_blueprint_page_and_inherited_on_the_agents_credentials_page(client,
                                                                                                  registry_world):
    from django.urls import reverse

    w = registry_world
    rule = {"name": "fleet", "issuer": ISSUER, "subject": "system:serviceaccount:agents:fleet", "audience": "portal"}
    add = reverse("blueprint-federated-credential-add", args=[w.blueprint.pk])
    client.force_login(w.owner)
    page = client.get(reverse("blueprint-detail", args=[w.blueprint.pk])).content.decode()
    assert "No defaults" in page and 'id="blueprint-federated-form"' not in page  # owners see, do not add
    assert client.post(add, rule).status_code == 403 and not FederatedCredential.objects.exists()
    client.force_login(w.inherited)  # a Security Administrator
    bad = client.post(add, {**rule, "issuer": "http://oidc.example"})
    assert bad.status_code == 400 and "only https" in bad.content.decode() and not FederatedCredential.objects.exists()
    assert client.post(add, rule).status_code == 302
    default = FederatedCredential.objects.get(blueprint=w.blueprint)
    assert AuditEvent.objects.filter(action="agent.federated_credential_add").count() == 1
    page = client.get(reverse("blueprint-detail", args=[w.blueprint.pk])).content.decode()
    assert f'data-blueprint-default="{default.pk}"' in page and "data-confirm=\"Remove this default?" in page
    client.force_login(w.owner)
    credentials = client.get(reverse("agent-credentials", args=[w.agent.pk])).content.decode()
    assert "system:serviceaccount:agents:fleet" in credentials and "inherited from" in credentials
    assert 'id="inherited-note"' in credentials and reverse("blueprint-detail", args=[w.blueprint.pk]) in credentials
    assert "federated" in trust.credential_types(w.agent)
    revoke = reverse("blueprint-federated-credential-revoke", args=[w.blueprint.pk, default.pk])
    assert client.post(revoke).status_code == 403
    client.force_login(w.ga)
    assert client.post(revoke).status_code == 302
    default.refresh_from_db()
    assert default.revoked_at is not None and "federated" not in trust.credential_types(w.agent)
    assert AuditEvent.objects.filter(action="agent.federated_credential_revoke").count() == 1


def test_r28_blueprint_defaults_api(client, registry_world):
    w = registry_world
    url = f"/api/v1/blueprints/{w.blueprint.pk}/federated-credentials/"
    rule = {"issuer": ISSUER, "subject": "system:serviceaccount:agents:*", "subject_is_pattern": True,
            "audience": "portal"}
    client.force_login(w.owner)
    assert client.get(url).json() == []
    assert client.post(url, rule, content_type="application/json").status_code == 403
    client.force_login(w.ga)
    assert client.post(url, {**rule, "audience": ""}, content_type="application/json").status_code == 400
    created = client.post(url, rule, content_type="application/json")
    assert created.status_code == 201 and created.json()["subject_is_pattern"] is True
    assert client.post(url, rule, content_type="application/json").status_code == 400  # the same rule twice
    listed = client.get(url).json()
    assert [r["id"] for r in listed] == [created.json()["id"]]
    revoked = client.post(f"{url}{created.json()['id']}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert client.post(f"/api/v1/blueprints/{w.blueprint.pk}/federated-credentials/999999/revoke/").status_code == 404
