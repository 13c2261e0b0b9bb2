"""Redeploys under load lose no request that was accepted, and every token issued has its sign-in row (R22;
``gunicorn.conf.py``; README, "Running in production").

The portal runs as in production (gunicorn with 2 sync workers, ``DEBUG=0``) on a throwaway PostgreSQL, with the
local-memory cache (rate limits raised: the load is one agent). A small load balancer in the test sends
client-credentials token requests from four threads, round-robin over the servers. Like a real one, it tries the
next server when a connection is refused, since nothing was sent; once a connection is established and the request
sent, whatever happens — a reset, a timeout, a status other than 200 — is that request's outcome and counts as a
failure. Nothing is retried after that point.
"""

from __future__ import annotations

import base64
import itertools
import json
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.conf import settings

from tests.faults.conftest import (
    STARTUP_TIMEOUT,
    free_port,
    manage,
    portal_env,
    record_figure,
    stop_process,
    wait_for_port,
)

THREADS = 4
GUNICORN_CONF = Path(settings.BASE_DIR) / "gunicorn.conf.py"
SETUP = """
import json
from agents import registry
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace
owner = UserFactory(username="owner")
workspace = make_workspace("alpha", owners=[owner, UserFactory(username="owner_b")])
blueprint = make_blueprint("RedeployAgent", permissions=("User.Read.All",))
agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
    blueprint, "redeploy-agent", sponsors=[owner], owners=[owner])).agent
credential, secret = registry.credential_rotate(actor=None, agent=agent)
print(json.dumps({"client_id": credential.identity.client_id, "secret": secret}))
"""


class LoadBalancer:
    """Token requests from ``THREADS`` threads, round-robin over ``ports``, until ``stop()``."""

    def __init__(self, ports: list[int], client_id: str, secret: str) -> None:
        self.ports = ports
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        body = b"grant_type=client_credentials"
        self.request = (f"POST /oauth/token/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\n"
                        "Content-Type: application/x-www-form-urlencoded\r\nX-Forwarded-Proto: https\r\n"
                        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
        self.lock = threading.Lock()
        self.turn = itertools.count()
        self.answered: Counter[int] = Counter()  # 200 answers per port
        self.failures: Counter[str] = Counter()  # outcome of an accepted request that was not a token
        self.refused = 0  # connections refused before anything was sent, tried on the next server
        self.tokens = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(THREADS)]

    def start(self) -> LoadBalancer:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in self.threads), "a request never ended"

    def wait_for_answers(self, count: int, port: int | None = None, timeout: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                answered = self.answered[port] if port else sum(self.answered.values())
            if answered >= count:
                return
            time.sleep(0.05)
        pytest.fail(f"only {answered} of {count} answers in {timeout} s; failures: {dict(self.failures)}")

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self._one()

    def _one(self) -> None:
        first = next(self.turn) % len(self.ports)
        for port in self.ports[first:] + self.ports[:first]:
            try:
                connection = socket.create_connection(("127.0.0.1", port), timeout=60)
            except ConnectionRefusedError:
                with self.lock:
                    self.refused += 1
                continue
            with connection:
                outcome = self._exchange(connection)
            with self.lock:
                if outcome == "200":
                    self.answered[port] += 1
                    self.tokens += 1
                else:
                    self.failures[outcome] += 1
            return
        time.sleep(0.05)  # every server refused: nothing was sent, the client tries again

    def _exchange(self, connection: socket.socket) -> str:
        try:
            connection.sendall(self.request)
            response = b""
            while chunk := connection.recv(65536):
                response += chunk
        except OSError as error:
            return type(error).__name__
        head, _, body = response.partition(b"\r\n\r\n")
        status = head.split(b" ", 2)[1].decode() if head.startswith(b"HTTP/") else "no answer"
        if status == "200" and not json.loads(body).get("access_token", "").startswith("ey"):  # a JWT (docs/oauth.md)
            return "200 without a token"
        return status


class Server:
    """gunicorn on a fixed loopback port, started and stopped by the test (as an operator does)."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port = env, port
        self.log = Path(env["PORTAL_VAR_DIR"]) / f"gunicorn-{port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
             "--workers", "2", "--log-level", "info", "--timeout", "120"],
            cwd=settings.BASE_DIR, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, self.log)
        return self

    def booted_workers(self) -> int:
        return self.log.read_text(errors="replace").count("Booting worker")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=STARTUP_TIMEOUT)


@pytest.fixture(scope="module")
def portal(throwaway_postgres, tmp_path_factory):
    """(environment, credentials, query) of a migrated portal with one agent on the throwaway PostgreSQL."""
    env = portal_env(tmp_path_factory.mktemp("redeploy"), database_url=throwaway_postgres.url(),
                     OAUTH_RATE_LIMIT_PER_CLIENT="100000000", OAUTH_RATE_LIMIT_PER_IP="100000000",
                     RISK_BURST_PER_MINUTE="100000000")
    manage(env, "migrate", "--noinput", "-v0")
    credentials = json.loads(manage(env, "shell", "-v0", "-c", SETUP).stdout.strip().splitlines()[-1])
    return env, credentials, throwaway_postgres.query


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def _tokens_and_sign_ins(query) -> tuple[int, int, int]:
    """Tokens issued, successful sign-ins holding a token, and tokens without their sign-in row."""
    [(issued, without_sign_in)] = query(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM signin_signin s WHERE s.token_id = t.id)) "
        "FROM signin_accesstoken t")
    [(signed_in,)] = query("SELECT COUNT(*) FROM signin_signin WHERE outcome = 'success' AND token_id IS NOT NULL")
    return issued, signed_in, without_sign_in


def test_r22_a_reload_under_load_fails_no_request(portal, servers):
    env, credentials, query = portal
    issued_before, signed_in_before, _ = _tokens_and_sign_ins(query)
    server = Server(env, free_port())
    servers.append(server.start())
    load = LoadBalancer([server.port], **credentials).start()
    try:
        load.wait_for_answers(50)
        started, before = time.monotonic(), load.tokens
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while server.booted_workers() < 4 and time.monotonic() < deadline:  # two at start, two after the reload
            time.sleep(0.1)
        assert server.booted_workers() >= 4, server.log.read_text()[-3000:]
        load.wait_for_answers(before + 100)  # the new workers serve
        seconds = time.monotonic() - started
    finally:
        load.stop()
    requests = load.tokens + sum(load.failures.values())
    record_figure({"scenario": "redeploy", "n": requests, "seconds": round(seconds, 2),
                   "failed": sum(load.failures.values()), "event": "gunicorn reload (SIGHUP), 2 workers",
                   "load": f"{THREADS} client threads, token requests", "goal": 0})
    assert load.failures == Counter(), dict(load.failures)
    issued, signed_in, without_sign_in = _tokens_and_sign_ins(query)
    assert (issued - issued_before, signed_in - signed_in_before, without_sign_in) == (load.tokens, load.tokens, 0)


def test_r22_stopping_and_restarting_one_of_two_servers_fails_no_accepted_request(portal, servers):
    env, credentials, query = portal
    issued_before, signed_in_before, _ = _tokens_and_sign_ins(query)
    restarted, other = Server(env, free_port()), Server(env, free_port())
    servers.extend([restarted.start(), other.start()])
    load = LoadBalancer([restarted.port, other.port], **credentials).start()
    try:
        load.wait_for_answers(50, port=restarted.port)
        load.wait_for_answers(50, port=other.port)
        started = time.monotonic()
        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(timeout=STARTUP_TIMEOUT) == 0, restarted.log.read_text()[-3000:]
        served_before_restart = load.answered[restarted.port]
        restarted.start()
        load.wait_for_answers(served_before_restart + 50, port=restarted.port)
        seconds = time.monotonic() - started
    finally:
        load.stop()
    requests = load.tokens + sum(load.failures.values())
    record_figure({"scenario": "redeploy_rolling_restart", "n": requests, "seconds": round(seconds, 2),
                   "failed": sum(load.failures.values()), "refused_and_sent_elsewhere": load.refused,
                   "event": "SIGTERM to one of two gunicorn servers, then start it again",
                   "load": f"{THREADS} client threads, token requests, round-robin", "goal": 0})
    assert load.failures == Counter(), dict(load.failures)
    issued, signed_in, without_sign_in = _tokens_and_sign_ins(query)
    assert (issued - issued_before, signed_in - signed_in_before, without_sign_in) == (load.tokens, load.tokens, 0)


def test_a_stopping_server_refuses_new_connections_and_still_serves_the_queued_ones():
    conf = runpy.run_path(str(GUNICORN_CONF))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        queued = socket.create_connection(listener.getsockname(), timeout=10)
        assert not conf["refuses_new_connections"](listener)
        assert conf["refuse_new_connections"](listener) and conf["refuses_new_connections"](listener)
        queued.sendall(b"sent before the stop")
        with pytest.raises(TimeoutError):  # the connection attempt is not answered; its kernel would retry
            socket.create_connection(listener.getsockname(), timeout=0.5)
        accepted, _ = listener.accept()
        with accepted, queued:
            assert accepted.recv(100) == b"sent before the stop"
            accepted.sendall(b"answered")
            assert queued.recv(100) == b"answered"
