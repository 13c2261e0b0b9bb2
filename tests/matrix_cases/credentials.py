"""Permission-matrix cases for an agent's keys and federated credentials (R28; docs/oauth.md, "Agents without
secrets"): the credentials page is for whoever sees the agent; adding and revoking for its owners and the
workspace's owners (inherited owners too); the API follows the same rules."""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import AGENT_MANAGE, AGENT_VIEW, LOGIN, Case, expect


def _pem(w) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _key_id(w) -> int:
    from agents import trust

    return trust.key_credential_add(actor=None, agent=w.agent, pem=_pem(w)).pk


def _rule_id(w) -> int:
    from agents import trust
    from agents.models import FederatedCredential

    existing = FederatedCredential.objects.filter(agent=w.agent, revoked_at__isnull=True).first()
    if existing is not None:  # the URL walk builds every case's URL in one world
        return existing.pk
    return trust.federated_credential_add(actor=None, agent=w.agent, issuer="https://issuer.example/cluster",
                                          subject="system:serviceaccount:agents:matrix", audience="portal").pk


def _url(name, *extra):
    return lambda w: reverse(name, args=[w.agent.pk, *[e(w) for e in extra]])


RULE = {"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:org/agent:ref:refs/heads/main",
        "audience": "https://portal.example"}
API_READ = expect(403, 200, 200, 200, 200, 404)
API_CREATE = expect(403, 403, 201, 201, 201, 404)
API_WRITE = expect(403, 403, 200, 200, 200, 404)

CASES = [
    Case("agent-credentials", "GET", _url("agent-credentials"), AGENT_VIEW),
    Case("agent-key-credential-add", "POST", _url("agent-key-credential-add"), AGENT_MANAGE,
         data=lambda w: {"public_key": _pem(w)}),
    Case("agent-key-credential-revoke", "POST", _url("agent-key-credential-revoke", _key_id), AGENT_MANAGE),
    Case("agent-federated-credential-add", "GET", _url("agent-federated-credential-add"),
         expect(LOGIN, 403, 200, 200, 200, 404)),
    Case("agent-federated-credential-add", "POST", _url("agent-federated-credential-add"), AGENT_MANAGE,
         data=lambda w: RULE),
    Case("agent-federated-credential-revoke", "POST", _url("agent-federated-credential-revoke", _rule_id),
         AGENT_MANAGE),
    Case("api-agent-key-credentials", "GET", lambda w: f"/api/v1/agents/{w.agent.pk}/key-credentials/", API_READ),
    Case("api-agent-key-credentials", "POST", lambda w: f"/api/v1/agents/{w.agent.pk}/key-credentials/",
         API_CREATE, data=lambda w: {"pem": _pem(w)}),
    Case("api-agent-key-credential-revoke", "POST",
         lambda w: f"/api/v1/agents/{w.agent.pk}/key-credentials/{_key_id(w)}/revoke/", API_WRITE),
    Case("api-agent-federated-credentials", "GET",
         lambda w: f"/api/v1/agents/{w.agent.pk}/federated-credentials/", API_READ),
    Case("api-agent-federated-credentials", "POST",
         lambda w: f"/api/v1/agents/{w.agent.pk}/federated-credentials/", API_CREATE, data=lambda w: RULE),
    Case("api-agent-federated-credential-revoke", "POST",
         lambda w: f"/api/v1/agents/{w.agent.pk}/federated-credentials/{_rule_id(w)}/revoke/", API_WRITE),
]


# Blueprint defaults: every signed-in person sees them (as the blueprint page); Global and Security Administrators
# (here the inherited owner, a Security Administrator, and the Global Administrator) add and remove them.
def _blueprint_rule_id(w) -> int:
    from agents import trust
    from agents.models import FederatedCredential

    existing = FederatedCredential.objects.filter(blueprint=w.blueprint, revoked_at__isnull=True).first()
    if existing is not None:
        return existing.pk
    return trust.federated_credential_add(actor=None, blueprint=w.blueprint, issuer="https://issuer.example/fleet",
                                          subject="system:serviceaccount:agents:fleet", audience="portal").pk


TRUST_ADMIN = expect(LOGIN, 403, 403, 302, 302, 403)
API_ALL_READ = expect(403, 200, 200, 200, 200, 200)

CASES += [
    Case("blueprint-federated-credential-add", "POST",
         lambda w: reverse("blueprint-federated-credential-add", args=[w.blueprint.pk]), TRUST_ADMIN,
         data=lambda w: RULE),
    Case("blueprint-federated-credential-revoke", "POST",
         lambda w: reverse("blueprint-federated-credential-revoke", args=[w.blueprint.pk, _blueprint_rule_id(w)]),
         TRUST_ADMIN),
    Case("api-blueprint-federated-credentials", "GET",
         lambda w: f"/api/v1/blueprints/{w.blueprint.pk}/federated-credentials/", API_ALL_READ),
    Case("api-blueprint-federated-credentials", "POST",
         lambda w: f"/api/v1/blueprints/{w.blueprint.pk}/federated-credentials/",
         expect(403, 403, 403, 201, 201, 403), data=lambda w: RULE),
    Case("api-blueprint-federated-credential-revoke", "POST",
         lambda w: f"/api/v1/blueprints/{w.blueprint.pk}/federated-credentials/{_blueprint_rule_id(w)}/revoke/",
         expect(403, 403, 403, 200, 200, 403)),
]
