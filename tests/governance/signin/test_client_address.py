"""The token endpoint and runs behind a TLS-terminating proxy (R20, R22): conditional access, the sign-in log and
per-address rate limits see the client the trusted proxy names, never the proxy; an untrusted peer's
X-Forwarded-For is ignored. tests/governance/signin/test_behind_nginx.py runs the same story through a real nginx."""

from __future__ import annotations

import base64

import pytest

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.runs import services as runs
from governance.runs.models import Run
from governance.signin.models import SignIn
from portal.network import parse_trusted_proxies

pytestmark = pytest.mark.django_db
PROXY = "10.0.0.5"
CLIENT = "203.0.113.9"
OTHER_CLIENT = "198.51.100.20"


@pytest.fixture
def behind_proxy(settings):
    settings.TRUSTED_PROXIES = parse_trusted_proxies([PROXY])


@pytest.fixture
def credentials(registry_world):
    credential, secret = registry.credential_rotate(actor=None, agent=registry_world.agent)
    return credential.identity.client_id, secret


def _token(client, credentials, *, peer=PROXY, forwarded=None):
    basic = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    return client.post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION=basic,
                       REMOTE_ADDR=peer, **headers)


def _block_network(network: str) -> None:
    conditional_access.policy_save(actor=None, data={"name": "Block the test network", "state": "on", "grant": "block",
                                                     "all_agents": True, "ip_ranges": [network]})


def test_r20_a_network_block_policy_holds_behind_the_proxy(client, credentials, behind_proxy):
    _block_network("203.0.113.0/24")
    refused = _token(client, credentials, forwarded=CLIENT)
    assert refused.status_code == 400 and "Block the test network" in refused.json()["error_description"]
    assert _token(client, credentials, forwarded=OTHER_CLIENT).status_code == 200


def test_r20_an_untrusted_peer_cannot_escape_a_network_block_with_a_forged_header(client, credentials, behind_proxy):
    _block_network("203.0.113.0/24")
    forged = _token(client, credentials, peer=CLIENT, forwarded=OTHER_CLIENT)
    assert forged.status_code == 400 and "Block the test network" in forged.json()["error_description"]
    assert SignIn.objects.get().ip == CLIENT


def test_r22_the_sign_in_log_records_the_client_behind_the_proxy(client, credentials, behind_proxy):
    assert _token(client, credentials, forwarded=f"192.0.2.1, {CLIENT}").status_code == 200
    assert SignIn.objects.get().ip == CLIENT


def test_r22_one_noisy_client_behind_the_proxy_does_not_use_up_another_clients_budget(
        client, credentials, behind_proxy, settings, fresh_rate_window):
    settings.OAUTH_RATE_LIMIT_PER_IP = 2
    noisy = [_token(client, ("someone", "x"), forwarded=CLIENT).status_code for _ in range(3)]
    assert noisy == [401, 401, 429]
    assert _token(client, credentials, forwarded=OTHER_CLIENT).status_code == 200


def _run_session(world):
    return runs.session_open(actor=world.owner, agent=world.agent)


def test_r20_a_network_block_policy_holds_for_runs_started_behind_the_proxy(client, registry_world, behind_proxy):
    w = registry_world
    _block_network("203.0.113.0/24")
    client.force_login(w.owner)
    session = _run_session(w)
    started = client.post("/api/v1/runs/", {"session": session.pk}, content_type="application/json",
                          REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT)
    assert started.json()["status"] == "refused" and "Block the test network" in started.json()["refused_reason"]
    client.post(f"/sessions/{session.pk}/run/", {}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT)
    assert list(Run.objects.values_list("status", flat=True)) == ["refused", "refused"]
    client.post(f"/sessions/{session.pk}/run/", {}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=OTHER_CLIENT)
    assert Run.objects.exclude(status="refused").count() == 1
