"""Redis stopped (docs/design.md, "Faults"): the OAuth endpoints keep answering with per-process limits, ``/healthz``
says ``degraded``, the shared counters are used again once Redis returns, and a task queued meanwhile is published
once the broker answers.

In process: the cache points at a port nothing listens on (or at a throwaway ``redis-server`` stopped and started
by the test). Under load: gunicorn with 2 workers and production settings on a throwaway PostgreSQL and Redis; two
client threads ask for tokens while Redis is stopped and started again. ``fault_redis_down`` is the share of token
requests sent while Redis was down that were answered 200 with a token (goal: 100 %).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import time
from dataclasses import dataclass

import pytest
import redis
from celery import Celery
from django.urls import reverse

from agents import registry
from governance.signin import tokens
from governance.signin.models import SignIn
from portal import cache as portal_cache
from portal import celery as portal_celery
from portal.models import JobRun
from tests.faults.conftest import free_port, migrated_with_an_agent, portal_env, record_figure

CACHE_OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5}  # as portal/settings.py sets them


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _token(client, client_id: str, secret: str, ip: str = "127.0.0.1"):
    return client.post("/oauth/token/", {"grant_type": "client_credentials"},
                       HTTP_AUTHORIZATION=_basic(client_id, secret), REMOTE_ADDR=ip)


def _point_cache_at(settings, url: str) -> None:
    settings.CACHES = {"default": {"BACKEND": "portal.cache.FailSoftRedisCache", "LOCATION": url,
                                   "OPTIONS": CACHE_OPTIONS}}


@pytest.fixture
def fresh_redis_health(monkeypatch):
    """Each test starts with Redis deemed healthy in this process."""
    monkeypatch.setattr(portal_cache, "_health", portal_cache._Health())


@pytest.fixture
def redis_down(settings, fresh_redis_health):
    """The production cache backend pointed at a loopback port where nothing listens."""
    _point_cache_at(settings, f"redis://127.0.0.1:{free_port()}/0")


@pytest.fixture
def agent_secret(registry_world) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=registry_world.agent)
    return credential.identity.client_id, secret


# --- in process -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_token_introspection_and_revocation_answer_while_redis_is_down(client, redis_down, agent_secret):
    client_id, secret = agent_secret
    issued = _token(client, client_id, secret)
    assert issued.status_code == 200, issued.content
    value = issued.json()["access_token"]
    assert SignIn.objects.filter(client_id=client_id, token__isnull=False).count() == 1

    server, server_secret = tokens.resource_server_create(actor=None, name="Outage resource server")
    introspected = client.post("/oauth/introspect/", {"token": value},
                               HTTP_AUTHORIZATION=_basic(server.client_id, server_secret))
    assert introspected.status_code == 200 and introspected.json()["active"] is True

    revoked = client.post("/oauth/revoke/", {"token": value}, HTTP_AUTHORIZATION=_basic(client_id, secret))
    assert revoked.status_code == 200
    again = client.post("/oauth/introspect/", {"token": value},
                        HTTP_AUTHORIZATION=_basic(server.client_id, server_secret))
    assert again.status_code == 200 and again.json() == {"active": False}


@pytest.mark.django_db
def test_the_rate_limit_holds_per_process_while_redis_is_down(client, redis_down, agent_secret, settings,
                                                              fresh_rate_window):
    settings.OAUTH_RATE_LIMIT_PER_CLIENT = 2
    client_id, secret = agent_secret
    assert [_token(client, client_id, secret).status_code for _ in range(2)] == [200, 200]
    limited = _token(client, client_id, secret)
    assert limited.status_code == 429 and limited["Content-Type"].startswith("application/json")
    assert int(limited["Retry-After"]) > 0


@pytest.mark.django_db
def test_the_lock_out_holds_per_process_while_redis_is_down(client, redis_down, agent_secret, settings,
                                                            fresh_rate_window):
    settings.OAUTH_FAILED_AUTH_LOCK = 2
    client_id, secret = agent_secret
    assert [_token(client, client_id, "wrong").status_code for _ in range(2)] == [401, 401]
    locked = _token(client, client_id, secret)  # the right secret, from the locked-out address
    assert locked.status_code == 401 and locked.json()["error"] == "invalid_client"
    assert _token(client, client_id, secret, ip="127.0.0.9").status_code == 200  # elsewhere it still works


@pytest.mark.django_db
def test_a_dead_redis_is_logged_once_and_costs_no_timeout_per_request(client, redis_down, agent_secret, caplog):
    client_id, secret = agent_secret
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="portal.cache"):
        answers = [_token(client, client_id, secret).status_code for _ in range(20)]
    assert answers == [200] * 20
    warnings = [r for r in caplog.records if r.name == "portal.cache"]
    assert len(warnings) == 1 and "Redis does not answer" in warnings[0].getMessage()
    assert time.monotonic() - started < 20  # no request waits on Redis for long

    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "degraded" and "redis" in health.json()["failing"]


@pytest.mark.django_db
def test_shared_counters_are_used_again_once_redis_answers(client, settings, fresh_redis_health, throwaway_redis,
                                                           agent_secret, fresh_rate_window):
    client_id, secret = agent_secret
    _point_cache_at(settings, throwaway_redis.url)
    shared = redis.Redis.from_url(throwaway_redis.url, socket_connect_timeout=2)
    throwaway_redis.stop()
    try:
        assert _token(client, client_id, secret).status_code == 200  # per-process counter
        assert portal_cache.redis_degraded()
    finally:
        throwaway_redis.start()
    assert not list(shared.scan_iter(f"*aip:rl:client:{client_id}:*"))
    time.sleep(portal_cache.RETRY_SECONDS + 0.2)
    assert [_token(client, client_id, secret).status_code for _ in range(3)] == [200] * 3
    [key] = shared.scan_iter(f"*aip:rl:client:{client_id}:*")
    assert int(shared.get(key)) == 3  # counted in Redis, where every worker sees it
    assert not portal_cache.redis_degraded()
    shared.flushdb()
    shared.close()


@pytest.mark.django_db
def test_a_task_queued_while_the_broker_is_down_is_published_once_it_returns(client, world, throwaway_redis,
                                                                            monkeypatch,
                                                                            django_capture_on_commit_callbacks):
    broker = Celery("faults", broker=throwaway_redis.url, set_as_current=False)
    broker.conf.broker_transport_options = {"socket_connect_timeout": 0.5}

    @broker.task(name="portal.run_job")
    def run_job(*args):  # pragma: no cover - never run here: only published
        return args

    monkeypatch.setattr(portal_celery, "app", broker)
    monkeypatch.setattr(portal_celery, "PUBLISH_RETRY_SECONDS", 0.2)
    shared = redis.Redis.from_url(throwaway_redis.url, socket_connect_timeout=2)
    throwaway_redis.stop()
    try:
        client.force_login(world.owner)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(reverse("job-run-now", args=["expire_runs"]))
        assert response.status_code == 302  # the request that queued it is not failed for the broker
        assert portal_celery.waiting_for_broker() == 1
    finally:
        throwaway_redis.start()
    try:
        run = JobRun.objects.get(job="expire_runs")
        deadline = time.monotonic() + 60
        while shared.llen("celery") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        [message] = [json.loads(raw) for raw in shared.lrange("celery", 0, -1)]
        assert message["headers"]["task"] == "portal.run_job"
        assert str(run.pk) in message["headers"]["argsrepr"]
        deadline = time.monotonic() + 10
        while portal_celery.waiting_for_broker() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert portal_celery.waiting_for_broker() == 0
    finally:
        with portal_celery._waiting_lock:  # nothing left for the real broker once the test's app is gone
            portal_celery._waiting.clear()
        broker.pool.force_close_all()
        shared.flushdb()
        shared.close()


# --- under load, in production --------------------------------------------------------------------------------
PACE = 0.025  # seconds between one client thread's requests
CLIENTS = 2
WARM_UP_SECONDS = 3
DOWN_SECONDS = 5
AFTER_SECONDS = 4


@dataclass(frozen=True)
class Answer:
    """One request as the client saw it."""

    started: float  # time.monotonic()
    ended: float
    status: int  # 0: no HTTP answer at all
    content_type: str
    body: str


def _ask(port: int, method: str, path: str, headers: dict | None = None, body: str | None = None) -> Answer:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"X-Forwarded-Proto": "https", **(headers or {})})
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
        return Answer(started, time.monotonic(), response.status, response.getheader("Content-Type", ""), text)
    except OSError as error:
        return Answer(started, time.monotonic(), 0, "", repr(error))
    finally:
        connection.close()


class TokenLoad:
    """``CLIENTS`` threads asking for tokens, each one request every ``PACE`` seconds, until the block ends."""

    def __init__(self, port: int, client_id: str, secret: str):
        self.port = port
        self.headers = {"Authorization": _basic(client_id, secret),
                        "Content-Type": "application/x-www-form-urlencoded"}
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CLIENTS)]

    def _run(self) -> None:
        while not self._stopping.is_set():
            answer = _ask(self.port, "POST", "/oauth/token/", self.headers, "grant_type=client_credentials")
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


def test_redis_down_under_token_load_keeps_tokens_flowing_then_shares_the_counters_again(
        throwaway_postgres, throwaway_redis, start_gunicorn, tmp_path):
    env = portal_env(tmp_path, database_url=throwaway_postgres.url(), redis_url=throwaway_redis.url,
                     OAUTH_RATE_LIMIT_PER_CLIENT="1000000", OAUTH_RATE_LIMIT_PER_IP="1000000")
    credentials = migrated_with_an_agent(env, "outage-agent")
    server = start_gunicorn(env, workers=2)
    shared = redis.Redis.from_url(throwaway_redis.url, socket_connect_timeout=2)
    headers = TokenLoad(server.port, **credentials).headers
    warm_up_tokens, deadline = 0, time.monotonic() + 120  # workers load the portal slowly on a loaded machine
    while warm_up_tokens < 4:
        assert time.monotonic() < deadline, server.log_text()[-3000:]
        answer = _ask(server.port, "POST", "/oauth/token/", headers, "grant_type=client_credentials")
        warm_up_tokens += answer.status == 200

    with TokenLoad(server.port, **credentials) as load:
        time.sleep(WARM_UP_SECONDS)
        stopping = time.monotonic()
        throwaway_redis.stop()
        stopped = time.monotonic()
        time.sleep(DOWN_SECONDS / 2)
        health_down = _ask(server.port, "GET", "/healthz")
        time.sleep(DOWN_SECONDS / 2)
        starting = time.monotonic()
        throwaway_redis.start()
        time.sleep(AFTER_SECONDS)
        health_after = _ask(server.port, "GET", "/healthz")
    answers = sorted(load.answers, key=lambda a: a.started)

    warm = [a for a in answers if a.ended < stopping]
    assert len(warm) >= 10 and all(a.status == 200 for a in warm), warm[-3:]
    during = [a for a in answers if a.started >= stopped and a.ended <= starting]
    assert len(during) >= 20, "the load did not run while Redis was down"
    correct = [a for a in during if a.status == 200 and '"access_token"' in a.body]
    share = 100.0 * len(correct) / len(during)
    record_figure({"scenario": "fault_redis_down", "n": len(during), "seconds": round(starting - stopped, 3),
                   "answered_correctly_pct": round(share, 2), "goal_pct": 100, "requests_total": len(answers),
                   "workers": 2, "behaviour": "per-process limits"})
    # Never a 5xx and never HTML, before, during or after the outage.
    assert all(a.status == 200 and a.content_type.startswith("application/json") for a in answers), \
        [a for a in answers if a.status != 200][:3]
    assert share == 100.0

    assert health_down.status == 200, health_down.body
    assert json.loads(health_down.body)["status"] == "degraded" and "redis" in json.loads(health_down.body)["failing"]
    assert health_after.status == 200 and "redis" not in json.loads(health_after.body)["failing"], health_after.body

    # Redis back: the rate-limit counters are in Redis again, shared by both workers.
    assert list(shared.scan_iter(f"*aip:rl:client:{credentials['client_id']}:*"))
    shared.close()

    # Nothing half-written: one sign-in row per token issued, each holding its token.
    issued = warm_up_tokens + sum(1 for a in answers if a.status == 200)
    [(sign_ins, with_token, tokens_stored)] = throwaway_postgres.query(
        "SELECT (SELECT count(*) FROM signin_signin), (SELECT count(*) FROM signin_signin WHERE token_id IS NOT "
        "NULL), (SELECT count(*) FROM signin_accesstoken)")
    assert sign_ins == with_token == tokens_stored == issued

    log = server.log_text()
    assert "Internal Server Error" not in log and "Traceback" not in log, log[-3000:]
    warnings = log.count("Redis does not answer")
    assert 1 <= warnings <= 2 * 2, log[-3000:]  # at most once a minute per worker, not once per request
