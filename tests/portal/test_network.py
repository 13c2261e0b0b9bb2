"""The client's address (portal.network): the socket peer, or the nearest untrusted hop behind TRUSTED_PROXIES."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from portal.network import client_ip, parse_trusted_proxies
from tests.factories import PASSWORD

PROXY = "10.0.0.5"


@pytest.fixture
def behind_proxies(settings):
    settings.TRUSTED_PROXIES = parse_trusted_proxies([PROXY, "10.1.0.0/16", "2001:db8:feed::/48"])


def _address(remote: str, forwarded: str | None = None) -> str | None:
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    return client_ip(RequestFactory().get("/", REMOTE_ADDR=remote, **headers))


def test_without_trusted_proxies_the_socket_peer_is_the_client_and_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = ()
    assert _address("198.51.100.7") == "198.51.100.7"
    assert _address(PROXY, "203.0.113.9") == PROXY


def test_a_trusted_proxy_names_the_client_it_saw(behind_proxies):
    assert _address(PROXY, "203.0.113.9") == "203.0.113.9"
    assert _address(PROXY, " 203.0.113.9 ") == "203.0.113.9"


def test_an_untrusted_peer_cannot_spoof_its_address(behind_proxies):
    assert _address("198.51.100.7", "10.0.0.1") == "198.51.100.7"
    assert _address("198.51.100.7", "203.0.113.9, 10.0.0.5") == "198.51.100.7"


def test_multiple_hops_the_rightmost_untrusted_address_wins(behind_proxies):
    # client (forged prefix) → edge proxy 10.1.2.3 → inner proxy 10.0.0.5 → the portal
    assert _address(PROXY, "1.2.3.4, 203.0.113.9, 10.1.2.3") == "203.0.113.9"
    # Every hop trusted: the leftmost one is the closest thing to a client there is.
    assert _address(PROXY, "10.1.9.9, 10.1.2.3") == "10.1.9.9"
    # No header at all: the proxy itself made the request (a health check).
    assert _address(PROXY) == PROXY


def test_ipv6_proxies_and_clients(behind_proxies):
    assert _address("2001:db8:feed::1", "2001:db8:beef:0:0:0:0:7") == "2001:db8:beef::7"
    assert _address("2001:db8:feed::1", "203.0.113.9, 2001:db8:feed::2") == "203.0.113.9"
    assert _address("2001:db8:beef::1", "203.0.113.9") == "2001:db8:beef::1"  # not a trusted network
    # A dual-stack socket reports an IPv4 proxy as ::ffff:a.b.c.d: it is still the trusted proxy.
    assert _address("::ffff:10.0.0.5", "203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize("forwarded", ["not-an-address", "203.0.113.9:4711", "", " , ", "203.0.113.9,,",
                                       "<script>", "999.1.1.1", "unknown"])
def test_a_malformed_entry_stops_the_walk_at_the_last_trusted_hop(behind_proxies, forwarded):
    assert _address(PROXY, forwarded) == PROXY
    assert _address(PROXY, f"203.0.113.9, {forwarded}, 10.1.2.3") == "10.1.2.3"


def test_no_socket_address_is_none(behind_proxies):
    assert _address("") is None
    assert _address("garbage", "203.0.113.9") is None


def test_trusted_proxies_parse_addresses_and_networks_and_refuse_garbage():
    assert [str(n) for n in parse_trusted_proxies(["10.0.0.5", " 10.1.0.0/16", "", "::1", "2001:db8::/32"])] == [
        "10.0.0.5/32", "10.1.0.0/16", "::1/128", "2001:db8::/32"]
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_PROXIES: 'proxy.internal' is not an IP address"):
        parse_trusted_proxies(["10.0.0.5", "proxy.internal"])


def test_an_invalid_trusted_proxies_setting_stops_the_process_at_start_up(tmp_path):
    env = {"TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.300", "PORTAL_VAR_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode != 0
    assert "ImproperlyConfigured: TRUSTED_PROXIES: '10.0.0.300' is not an IP address" in done.stderr


@pytest.mark.django_db
def test_login_throttling_counts_the_client_behind_the_proxy_not_the_proxy(world, behind_proxies, settings):
    """One client's failed sign-ins through the proxy do not lock out another client behind the same proxy."""
    settings.LOGIN_FAILURE_LIMIT = 1  # four failures per address
    noisy, quiet = Client(REMOTE_ADDR=PROXY), Client(REMOTE_ADDR=PROXY)
    for index in range(4):
        response = noisy.post("/accounts/login/", {"username": f"nobody{index}", "password": "wrong"},
                              HTTP_X_FORWARDED_FOR="203.0.113.9")
        assert response.status_code == 200
    refused = noisy.post("/accounts/login/", {"username": "owner", "password": "irrelevant-password"},
                         HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert refused.status_code == 429
    allowed = quiet.post("/accounts/login/", {"username": "owner_b", "password": PASSWORD},
                         HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert allowed.status_code == 302
