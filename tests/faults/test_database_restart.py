"""PostgreSQL restarted under a steady token load (docs/design.md, "Faults").

gunicorn with 2 workers and production settings (``DEBUG=0``, ``CONN_MAX_AGE=60``: each worker keeps its
connection) on a throwaway PostgreSQL and Redis. Two client threads ask for tokens with a real agent's client
credentials, one request every ``PACE`` seconds each; PostgreSQL is stopped (``pg_ctl stop -m fast``: every
connection is closed under the workers, as in a restart or a failover), kept down ``DOWN_SECONDS`` and started
again. While it is down the token endpoint answers a JSON 503 (``temporarily_unavailable``, ``Retry-After``),
never a 500 and never HTML; once it accepts connections every worker replaces its broken connection at the next
request, so the token endpoint answers 200 within a second (``fault_db_restart``: seconds of errors after
PostgreSQL accepts connections again; a kept dead connection used to fail requests until it aged out, 47–60 s).
Restarted once more while idle (``pg_ctl restart -m fast``), the very next requests are served. Nothing is
half-written: the sign-in log holds exactly one row per token issued, each with its token.
"""

from __future__ import annotations

import base64
import http.client
import threading
import time
from dataclasses import dataclass

import pytest

from tests.faults.conftest import migrated_with_an_agent, portal_env, record_figure

PACE = 0.025  # seconds between one client thread's requests
CLIENTS = 2
WARM_UP_SECONDS = 3
DOWN_SECONDS = 2
AFTER_SECONDS = 6
GOAL_SECONDS = 1.0


@dataclass(frozen=True)
class Answer:
    """One token request as the client saw it."""

    started: float  # time.monotonic()
    ended: float
    status: int  # 0: no HTTP answer at all (connection refused or reset)
    content_type: str
    retry_after: str
    body: str


def _ask_token(port: int, authorization: str) -> Answer:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/oauth/token/", body="grant_type=client_credentials", headers={
            "Authorization": authorization, "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-Proto": "https"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return Answer(started, time.monotonic(), response.status, response.getheader("Content-Type", ""),
                      response.getheader("Retry-After", ""), body)
    except OSError as error:
        return Answer(started, time.monotonic(), 0, "", "", repr(error))
    finally:
        connection.close()


class TokenLoad:
    """``CLIENTS`` threads asking for tokens, each one request every ``PACE`` seconds, until ``stop()``."""

    def __init__(self, port: int, client_id: str, secret: str):
        self.port = port
        self.authorization = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        while not self._stopping.is_set():
            answer = _ask_token(self.port, self.authorization)
            with self._lock:
                self.answers.append(answer)
            self._stopping.wait(max(0.0, PACE - (answer.ended - answer.started)))

    def __enter__(self) -> TokenLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=60)


def _accepting_again(postgres) -> float:
    """Start PostgreSQL and return the moment (monotonic) it first accepted a connection, probed every 20 ms."""
    accepted: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            if postgres.accepts_connections():
                accepted.append(time.monotonic())
                return
            time.sleep(0.02)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        postgres.start()
        prober.join(timeout=60)
    finally:
        done.set()
    assert accepted, "PostgreSQL started but the probe never connected"
    return accepted[0]


@pytest.fixture
def portal_on_throwaway_services(throwaway_postgres, throwaway_redis, start_gunicorn, tmp_path):
    env = portal_env(tmp_path, database_url=throwaway_postgres.url(), redis_url=throwaway_redis.url,
                     CONN_MAX_AGE="60", OAUTH_RATE_LIMIT_PER_CLIENT="0", OAUTH_RATE_LIMIT_PER_IP="0")
    credentials = migrated_with_an_agent(env, "restart-agent")
    server = start_gunicorn(env, workers=2)
    authorization = "Basic " + base64.b64encode(f"{credentials['client_id']}:{credentials['secret']}".encode()).decode()
    deadline = time.monotonic() + 120  # the workers import Django after the port is bound: slow on a loaded machine
    while (answer := _ask_token(server.port, authorization)).status != 200:
        assert time.monotonic() < deadline, answer
        time.sleep(0.2)
    return server, credentials


def test_postgresql_restart_under_token_load_fails_cleanly_while_down_and_recovers_within_a_second(
        throwaway_postgres, portal_on_throwaway_services):
    server, credentials = portal_on_throwaway_services
    postgres = throwaway_postgres
    with TokenLoad(server.port, **credentials) as load:
        time.sleep(WARM_UP_SECONDS)
        stopping = time.monotonic()
        postgres.stop("fast")  # every worker's kept connection is closed under it
        time.sleep(DOWN_SECONDS)
        accepting = _accepting_again(postgres)
        time.sleep(AFTER_SECONDS)
    answers = sorted(load.answers, key=lambda a: a.started)

    warm = [a for a in answers if a.ended < stopping]
    assert len(warm) >= 10 and all(a.status == 200 for a in warm), warm[-3:]
    failed = [a for a in answers if a.status != 200]
    assert failed, "no request reached the portal while PostgreSQL was down: the load did not run through it"
    errors_after = max(0.0, max(a.ended for a in failed) - accepting)
    after = [a for a in answers if a.started >= accepting + GOAL_SECONDS]
    record_figure({"scenario": "fault_db_restart", "n": len(answers), "seconds": round(errors_after, 3),
                   "goal_seconds": GOAL_SECONDS, "errors": len(failed),
                   "errors_after_accepting": sum(1 for a in failed if a.ended > accepting),
                   "statuses": sorted({a.status for a in failed}),
                   "down_seconds": round(accepting - stopping, 3), "workers": 2, "conn_max_age": 60})
    # Errors only while it is down: each a clean JSON 503 with Retry-After, never a 500, never an HTML page.
    unclean = [a for a in failed if not (a.status == 503 and a.content_type.startswith("application/json")
                                         and a.retry_after and '"temporarily_unavailable"' in a.body)]
    assert not unclean, unclean[:3]
    assert not [a for a in failed if a.started > accepting], "a request sent after PostgreSQL was back failed"
    assert errors_after <= GOAL_SECONDS, f"errors for {errors_after:.2f} s after PostgreSQL accepted connections"
    assert len(after) >= 20 and all(a.status == 200 for a in after)

    # Restarted again while no request is in flight (pg_ctl restart): the workers' kept connections are all dead,
    # and the first request each worker serves already gets a new one.
    postgres.restart("fast")
    idle = [_ask_token(server.port, load.authorization) for _ in range(10)]
    assert [a.status for a in idle] == [200] * 10, idle

    # Nothing half-written: one sign-in row per token, each holding its token, and one token per 200. A statement
    # that committed as PostgreSQL stopped may have lost its answer on the way back (that client saw a 503 and asks
    # again): at most one such request per client thread.
    issued = sum(1 for a in answers + idle if a.status == 200)
    [(sign_ins, with_token, tokens)] = postgres.query(
        "SELECT (SELECT count(*) FROM signin_signin), (SELECT count(*) FROM signin_signin WHERE token_id IS NOT "
        "NULL), (SELECT count(*) FROM signin_accesstoken)")
    assert sign_ins == with_token == tokens
    assert issued <= tokens <= issued + CLIENTS, (issued, tokens)
    log = server.log_text()
    assert "database unavailable" in log and "Internal Server Error" not in log
