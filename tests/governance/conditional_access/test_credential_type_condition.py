"""Conditional access by credential type (R20 with R28): a policy's condition "the client authenticated with one of
…" (secret, key, federated), evaluated at the token endpoint from how the client authenticated, and the same answer
from what-if; shown and taken by the editor, the list and the API."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.exceptions import ValidationError
from django.urls import reverse
from jwt.algorithms import ECAlgorithm

from agents import registry, trust
from governance.conditional_access import services as conditional_access
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.signin.models import SignIn

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _secret_token(client, agent):
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    basic = base64.b64encode(f"{credential.identity.client_id}:{secret}".encode()).decode()
    return client.post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=f"Basic {basic}")


def _key_token(client, agent, private_key, kid: str, audience: str):
    """A client-credentials request authenticated with ``private_key_jwt`` (RFC 7523 §2.2)."""
    client_id = agent.identity.client_id
    now = int(time.time())
    assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": audience, "iat": now, "exp": now + 60,
                            "jti": uuid.uuid4().hex}, private_key, algorithm="ES256", headers={"kid": kid})
    return client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id,
                                         "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion})


def _what_if(client, agent, credential_type: str) -> str:
    response = client.get(reverse("policy-what-if"), {"agent": agent.name, "credential_type": credential_type})
    assert response.status_code == 200
    return "allowed" if response.context["evaluation"].allowed else "blocked"


def _block_secrets(actor, kind: str, state: str = "on") -> ConditionalAccessPolicy:
    return conditional_access.policy_save(actor=actor, data={
        "name": f"No secrets for {kind} agents", "state": state, "grant": "block", "agent_kinds": [kind],
        "credential_types": ["secret"]})


def test_r28_conditional_access_on_credential_type_blocks_a_secret_and_what_if_agrees(client, registry_world,
                                                                                      settings):
    w = registry_world
    agent = w.agent
    policy = _block_secrets(w.ga, agent.kind)

    # A real token request with a client secret is blocked, and the sign-in row says why.
    blocked = _secret_token(client, agent)
    assert blocked.status_code == 400 and blocked.json()["error"] == "invalid_grant", blocked.content
    row = SignIn.objects.filter(agent=agent).latest("at")
    assert (row.outcome, row.credential_type) == ("blocked", "secret")
    assert row.policies == [{"id": policy.pk, "name": policy.name, "state": "on", "outcome": "block",
                             "reason": f"targets {agent.kind} agents and every condition holds"}]

    # What-if for the same agent and credential type gives the same decision; for a key or a federated credential
    # (or no client credential: a run start) the policy does not apply.
    client.force_login(w.ga)
    assert _what_if(client, agent, "secret") == "blocked"
    for other in ("key", "federated", ""):
        assert _what_if(client, agent, other) == "allowed"
    page = client.get(reverse("policy-what-if"), {"agent": agent.name, "credential_type": "key"}).content.decode()
    assert "credential type key is not one of secret" in page

    # The same agent authenticating with a key is allowed by the same policy.
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True), "kid": "ca-key"}
    trust.key_credential_add(actor=w.owner_b, agent=agent, jwk=jwk)
    allowed = _key_token(client, agent, private_key, "ca-key", settings.PORTAL_BASE_URL)
    assert allowed.status_code == 200, allowed.content
    row = SignIn.objects.filter(agent=agent).latest("at")
    assert (row.outcome, row.credential_type) == ("success", "key")
    assert row.policies == []  # the policy did not apply: its condition does not hold
    # …and still blocked with its secret.
    assert _secret_token(client, agent).status_code == 400

    # An allow policy "only keys and federated credentials" blocks the secret too; what-if agrees again.
    ConditionalAccessPolicy.objects.all().delete()
    conditional_access.policy_save(actor=w.ga, data={
        "name": "Keys or federation only", "state": "on", "grant": "allow", "all_agents": True,
        "credential_types": ["key", "federated"]})
    assert _secret_token(client, agent).status_code == 400
    row = SignIn.objects.filter(agent=agent).latest("at")
    assert row.outcome == "blocked"
    assert "credential type secret is not one of key, federated" in row.policies[0]["reason"]
    assert _what_if(client, agent, "secret") == "blocked"
    assert _what_if(client, agent, "key") == "allowed"
    assert _key_token(client, agent, private_key, "ca-key", settings.PORTAL_BASE_URL).status_code == 200


def test_r28_credential_type_condition_report_only_records_without_blocking(client, registry_world):
    w = registry_world
    _block_secrets(w.ga, w.agent.kind, state="report_only")
    assert _secret_token(client, w.agent).status_code == 200
    row = SignIn.objects.filter(agent=w.agent).latest("at")
    assert row.outcome == "success" and row.credential_type == "secret"
    assert row.policies[0]["outcome"] == "block" and row.policies[0]["state"] == "report_only"


def test_r28_credential_types_are_validated(registry_world):
    w = registry_world
    for bad in (["password"], "secret", [None]):
        with pytest.raises(ValidationError):
            conditional_access.policy_save(actor=w.ga, data={
                "name": "Bad", "state": "on", "grant": "block", "all_agents": True, "credential_types": bad})
    assert not ConditionalAccessPolicy.objects.filter(name="Bad").exists()


def test_r28_credential_type_condition_in_the_editor_the_list_and_the_api(client, registry_world):
    w = registry_world
    client.force_login(w.ga)
    response = client.post(reverse("policy-create"), {
        "name": "No secrets", "state": "report_only", "grant": "block", "agent_kinds": ["autonomous"],
        "credential_types": ["secret"]})
    assert response.status_code == 302, response.content
    policy = ConditionalAccessPolicy.objects.get(name="No secrets")
    assert policy.credential_types == ["secret"]
    assert "credential is one of secret" in client.get(reverse("policy-list")).content.decode()
    edit = client.get(reverse("policy-edit", args=[policy.pk])).content.decode()
    assert re.search(r'name="credential_types" value="secret"[^>]*checked', edit)
    assert not re.search(r'name="credential_types" value="key"[^>]*checked', edit)
    bad = client.post(reverse("policy-edit", args=[policy.pk]), {
        "name": "No secrets", "state": "report_only", "grant": "block", "agent_kinds": ["autonomous"],
        "credential_types": ["password"]})
    assert bad.status_code == 200 and ConditionalAccessPolicy.objects.get(pk=policy.pk).credential_types == ["secret"]
    api = client.get(f"/api/v1/policies/{policy.pk}/")
    assert api.status_code == 200 and json.loads(api.content)["credential_types"] == ["secret"]


def test_r28_secret_condition_blocks_a_confidential_clients_code_exchange_and_refresh(client):
    """The authorization-code and refresh-token grants pass how the client authenticated to conditional access: a
    confidential client with its secret is blocked by "credential type is one of secret", a public client (no
    credential) is not, and the sign-in log records the credential type."""
    from tests.governance.oauth.clients_helper import get_code, make_client, make_person, redeem, refresh

    confidential, secret = make_client(public=False)
    public, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, confidential, person)
    first = redeem(client, confidential, code, verifier, secret=secret)
    assert first.status_code == 200, first.content
    assert SignIn.objects.filter(client_id=confidential.client_id, outcome="success").latest("at") \
        .credential_type == "secret"
    public_code, public_verifier = get_code(client, public, person)
    conditional_access.policy_save(actor=None, data={
        "name": "No secrets for apps", "state": "on", "grant": "block", "agent_kinds": ["client_application"],
        "credential_types": ["secret"]})
    conditional_access.policies_changed()
    code, verifier = get_code(client, confidential, person)
    blocked = redeem(client, confidential, code, verifier, secret=secret)
    assert blocked.status_code == 400 and "No secrets for apps" in blocked.json()["error_description"]
    row = SignIn.objects.filter(client_id=confidential.client_id, grant_type="authorization_code").latest("at")
    assert row.outcome == "blocked" and row.credential_type == "secret"
    again = refresh(client, confidential, first.json()["refresh_token"], secret=secret)
    assert again.status_code == 400 and "No secrets for apps" in again.json()["error_description"]
    assert SignIn.objects.filter(client_id=confidential.client_id, grant_type="refresh_token").latest("at") \
        .outcome == "blocked"
    allowed = redeem(client, public, public_code, public_verifier)
    assert allowed.status_code == 200, allowed.content
    assert SignIn.objects.filter(client_id=public.client_id, outcome="success").latest("at").credential_type == ""
