"""The token endpoint behind a real nginx in front of a real gunicorn (R20, R22; docs/design.md, "The client's
address").

The portal runs as the README prescribes for production (DEBUG off, gunicorn) with ``TRUSTED_PROXIES=127.0.0.1``,
on a throwaway SQLite database (``PORTAL_VAR_DIR``) and the local-memory cache (one worker, so one rate-limit
counter). nginx listens on another loopback port and forwards with ``X-Forwarded-For: $proxy_add_x_forwarded_for``
and ``X-Forwarded-Proto: https``, as a TLS-terminating proxy does. Clients connect from distinct loopback addresses
(127.0.0.2, .3, .4): the whole of 127.0.0.0/8 is the loopback interface on Linux.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from django.conf import settings

from tests.conftest import _missing

BLOCKED, ALLOWED, NOISY = "127.0.0.2", "127.0.0.3", "127.0.0.4"
PER_IP_LIMIT = 3
SETUP = """
import json
from agents import registry
from governance.conditional_access import services as conditional_access
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace
owner = UserFactory(username="owner")
workspace = make_workspace("alpha", owners=[owner, UserFactory(username="owner_b")])
blueprint = make_blueprint("ProxiedAgent", permissions=("User.Read.All",))
agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
    blueprint, "proxied-agent", sponsors=[owner], owners=[owner])).agent
credential, secret = registry.credential_rotate(actor=None, agent=agent)
conditional_access.policy_save(actor=None, data={"name": "Block 127.0.0.2", "state": "on", "grant": "block",
                                                 "all_agents": True, "ip_ranges": ["127.0.0.2/32"]})
print(json.dumps({"client_id": credential.identity.client_id, "secret": secret}))
"""
NGINX_CONF = """
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client-body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"exited early:\n{log.read_text()[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.2)
        else:
            return
    pytest.fail(f"nothing listens on {port}:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(gunicorn port, nginx port, credentials, database path) of a portal running behind nginx."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        _missing("nginx", "apt-get install nginx-light (.ci/run installs it)")
    var = tmp_path_factory.mktemp("behind-nginx")
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORTAL_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="portal.settings", DEBUG="0",
               TRUSTED_PROXIES="127.0.0.1", OAUTH_RATE_LIMIT_PER_IP=str(PER_IP_LIMIT))
    for args in (["migrate", "--noinput", "-v0"], ["shell", "-v0", "-c", SETUP]):
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    credentials = json.loads(done.stdout.strip().splitlines()[-1])

    upstream, port = _free_port(), _free_port()
    gunicorn_log = var / "gunicorn.log"
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{upstream}",
         "--workers", "1", "--log-level", "warning"],
        cwd=settings.BASE_DIR, env=env, stdout=gunicorn_log.open("wb"), stderr=subprocess.STDOUT)
    (var / "nginx.conf").write_text(NGINX_CONF.format(tmp=var, port=port, upstream=upstream))
    nginx_log = var / "nginx.log"
    proxy = subprocess.Popen([nginx, "-p", str(var), "-c", str(var / "nginx.conf"), "-e", "stderr",
                              "-g", "daemon off;"], stdout=nginx_log.open("wb"), stderr=subprocess.STDOUT)
    try:
        _wait_for(upstream, gunicorn, gunicorn_log)
        _wait_for(port, proxy, nginx_log)
        yield upstream, port, credentials, var / "portal.sqlite3"
    finally:
        _stop(proxy)
        _stop(gunicorn)


def _token(port: int, source: str, client_id: str, secret: str, *, forwarded: str = "") -> tuple[int, dict]:
    """A client-credentials request from the loopback address ``source`` to ``port``."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    headers = {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
               "Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"}
    if forwarded:
        headers["X-Forwarded-For"] = forwarded
    try:
        connection.request("POST", "/oauth/token/", body="grant_type=client_credentials", headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def _sign_in_addresses(database: Path) -> list[str]:
    connection = sqlite3.connect(database)
    try:
        return [row[0] for row in connection.execute("SELECT ip FROM signin_signin ORDER BY id")]
    finally:
        connection.close()


def test_r20_a_network_block_policy_holds_behind_nginx_and_the_sign_in_log_records_the_client(stack):
    _upstream, port, credentials, database = stack
    before = len(_sign_in_addresses(database))
    status, body = _token(port, BLOCKED, **credentials)
    assert status == 400 and "Block 127.0.0.2" in body["error_description"]
    status, body = _token(port, ALLOWED, **credentials)
    assert status == 200 and jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"  # docs/oauth.md
    # Through nginx the header a client sends itself is kept on the left, where it is not believed.
    status, body = _token(port, BLOCKED, **credentials, forwarded=ALLOWED)
    assert status == 400 and "Block 127.0.0.2" in body["error_description"]
    assert _sign_in_addresses(database)[before:] == [BLOCKED, ALLOWED, BLOCKED]  # never nginx's 127.0.0.1


def test_r22_one_noisy_client_behind_nginx_does_not_throttle_another(stack, fresh_rate_window):
    _upstream, port, credentials, _database = stack
    noisy = [_token(port, NOISY, "someone", "wrong")[0] for _ in range(PER_IP_LIMIT + 1)]
    assert noisy == [401] * PER_IP_LIMIT + [429]
    assert _token(port, ALLOWED, **credentials)[0] == 200


def test_r20_a_peer_that_is_not_a_trusted_proxy_cannot_forge_its_address(stack):
    upstream, _port, credentials, database = stack
    # Straight to gunicorn from 127.0.0.2, claiming to be a proxy forwarding for 127.0.0.3: the claim is ignored.
    status, body = _token(upstream, BLOCKED, **credentials, forwarded=ALLOWED)
    assert status == 400 and "Block 127.0.0.2" in body["error_description"]
    assert _sign_in_addresses(database)[-1] == BLOCKED
