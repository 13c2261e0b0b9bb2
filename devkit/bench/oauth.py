"""OAuth benchmarks, registered with ``devkit.bench``: ``token_issue`` and ``introspect``.

Both measure the real thing over HTTP: a gunicorn server (2 sync workers — gunicorn's default and the production
command in the README; ``OAUTH_BENCH_WORKER_CLASS=gthread`` for threads with keep-alive) on a
loopback port, serving the production WSGI stack (``devkit.bench.wsgi``: same settings, plus a trivial
signed-in page at ``/bench/ping/``), and a load generator in a separate process (``loadgen_main``: asyncio over
raw keep-alive HTTP/1.1 connections, spread evenly over the workers). The baseline is that trivial page under the
same load on the same server in the same run, so ``ratio`` = time per token (or introspection) ÷ time per request
of the cheapest authenticated Django view.

The server must see the bench data, so it is committed, not rolled back with the command's transaction: it is
written by a connection of its own (a helper thread), named after a random tag, and deleted again in ``finally``
(agents, credentials, assignments, policies, the resource server, the sign-in rows and tokens the server wrote).
On SQLite the command's transaction holds the write lock, so that (empty) transaction is closed first.

Data: 20 active agent identities, each with a secret and three scopes from an access package assignment;
ten conditional-access policies in force (on and report-only, allow-lists on loopback ranges and time windows,
risk- and IP-conditioned blocks, exclusions) that target only these agents and let them through; for
``introspect`` also a resource server and 200 live tokens. The server's rate limits are raised far above the
load (``OAUTH_RATE_LIMIT_PER_CLIENT``/``_PER_IP`` in its environment): they are still counted, never hit.

Beyond the ``manage.py bench`` keys, the figures (requests/s, p50/p99 latency, errors, the setup) travel as
``Measured.extra`` and are written to stderr as one JSON line per scenario.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import import_module
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, reset_queries, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from agents import credentials
from agents.models import Agent, AgentIdentity, AttributeValue, Blueprint, Credential
from devkit.bench.portal import scenario
from governance.access.choices import AssignmentStatus
from governance.access.models import AccessPackage, Assignment
from governance.conditional_access import services as conditional_access
from governance.conditional_access.choices import PolicyGrant, PolicyState, RiskLevel
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.risk.models import RiskDetection
from governance.signin import resources, tokens
from governance.signin.choices import ActorKind, GrantType
from governance.signin.models import AccessToken, ResourceServer, SignIn
from portal.models import Permission, User, Workspace

AGENTS = 20
SCOPES = 3
INTROSPECTED_TOKENS = 200
WORKERS = 2
WORKER_CLASS = os.environ.get("OAUTH_BENCH_WORKER_CLASS", "sync")  # measured faster here than "gthread"
THREADS = 4
CONNECTIONS = 8
RAISED_LIMIT = "1000000000"  # per minute: counted like in production, never reached
READY_TIMEOUT = 60
LOADGEN_TIMEOUT = 1800


class Measured(tuple):
    """``(seconds, queries)`` as ``manage.py bench`` unpacks it, with the HTTP figures in ``extra``."""

    def __new__(cls, seconds: float, queries: int, extra: dict):
        measured = super().__new__(cls, (seconds, queries))
        measured.extra = extra
        return measured


# --- bench data (committed by a connection of its own, deleted afterwards) ---------------------------------------
@dataclass
class Fixture:
    tag: str
    host: str
    client_ids: list[str] = field(default_factory=list)
    agent_basics: list[str] = field(default_factory=list)  # "Basic …" per agent
    server_basic: str = ""
    token_values: list[str] = field(default_factory=list)
    session_key: str = ""
    policies_in_force: int = 0


def _basic(client_id: str, secret: str) -> str:
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"  # RFC 6749 §2.3.1: form-encoded, then base64
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _host() -> str:
    for host in settings.ALLOWED_HOSTS:
        if host and host != "*" and not host.startswith("."):
            return host
    return "localhost"


def _policies(tag: str, agents: list[Agent]) -> list[ConditionalAccessPolicy]:
    """Ten policies in force that target only the bench agents and let them through from loopback."""
    loopback = ["127.0.0.0/8", "::1/128"]
    every_day = list(range(7))
    always = [{"days": every_day, "start": "00:00", "end": "23:59"},
              {"days": every_day, "start": "23:59", "end": "00:00"}]  # the whole day (the second wraps midnight)
    run = {"key": "bench_run", "op": "equals", "value": tag}
    on, report = PolicyState.ON, PolicyState.REPORT_ONLY
    allow, block = PolicyGrant.ALLOW, PolicyGrant.BLOCK
    specs = [
        ("allow from loopback", on, allow, {"attribute_rules": [run], "ip_ranges": loopback}, agents, ()),
        ("allow named from private ranges", on, allow,
         {"ip_ranges": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", *loopback]}, agents, ()),
        ("allow around the clock", on, allow, {"attribute_rules": [run], "time_windows": always}, (), ()),
        ("block high risk", on, block, {"attribute_rules": [{"key": "bench_run", "op": "starts_with",
                                                              "value": "oauthbench-"}],
                                         "min_risk_level": RiskLevel.HIGH}, (), ()),
        ("block medium risk by tier", on, block,
         {"attribute_rules": [{"key": "tier", "op": "in", "value": ["0", "1", "2"]}],
          "min_risk_level": RiskLevel.MEDIUM}, (), ()),
        ("block documentation network", on, block, {"ip_ranges": ["203.0.113.0/24", "198.51.100.0/24"]},
         agents, ()),
        ("block excluded", on, block, {"attribute_rules": [run]}, (), agents),
        ("report-only block all", report, block, {"attribute_rules": [run]}, (), ()),
        ("report-only allow one host", report, allow, {"ip_ranges": ["127.0.0.1/32"]}, agents[: len(agents) // 2],
         ()),
        ("report-only block high risk at night", report, block,
         {"attribute_rules": [run], "min_risk_level": RiskLevel.HIGH,
          "time_windows": [{"days": every_day, "start": "22:00", "end": "06:00"}]}, (), ()),
    ]
    made = []
    for name, state, grant, conditions, named, excluded in specs:
        policy = ConditionalAccessPolicy(name=f"{tag} {name}", state=state, grant=grant,
                                         description="manage.py bench (deleted after the run)", **conditions)
        conditional_access.validate_policy(policy)
        policy.save()
        policy.agents.set(named)
        policy.excluded_agents.set(excluded)
        made.append(policy)
    return made


@transaction.atomic
def _create(tag: str, *, tokens_for_introspection: bool) -> Fixture:
    blueprint = Blueprint.objects.filter(is_complete=True, publisher_kind="microsoft").order_by("name").first()
    if blueprint is None:
        raise ImproperlyConfigured("bench needs the demo blueprints: run manage.py seed_demo first.")
    scopes = list(Permission.objects.filter(kind="application", privileged=False).order_by("name")[:SCOPES])
    now = timezone.now()
    fixture = Fixture(tag=tag, host=_host())
    workspace = Workspace.objects.create(slug=tag, name=f"Bench {tag}",
                                         owner_group=Group.objects.create(name=f"{tag}:owners"),
                                         contributor_group=Group.objects.create(name=f"{tag}:contributors"))
    agents = Agent.objects.bulk_create(
        Agent(workspace=workspace, blueprint=blueprint, name=f"{tag}-{i:02d}", scope="workspace",
              kind=blueprint.kind, identity_type="agent_identity", status="active", created_at=now)
        for i in range(AGENTS))
    AttributeValue.objects.bulk_create(
        AttributeValue(agent=agent, key=key, value=value) for i, agent in enumerate(agents)
        for key, value in (("bench_run", tag), ("tier", str(i % 3)), ("team", f"team-{i % 4}")))
    identities = AgentIdentity.objects.bulk_create(
        AgentIdentity(agent=agent, client_id=credentials.new_client_id(), created_at=now) for agent in agents)
    agent_secrets = [credentials.new_secret() for _ in identities]
    Credential.objects.bulk_create(
        Credential(identity=identity, secret_hash=credentials.hash_secret(secret), prefix=secret[:10],
                   created_at=now, expires_at=now + timedelta(days=1))
        for identity, secret in zip(identities, agent_secrets, strict=True))
    fixture.client_ids = [identity.client_id for identity in identities]
    fixture.agent_basics = [_basic(identity.client_id, secret)
                            for identity, secret in zip(identities, agent_secrets, strict=True)]
    package = AccessPackage.objects.create(workspace=workspace, name=f"{tag} scopes")
    package.permissions.set(scopes)
    Assignment.objects.bulk_create(
        Assignment(package=package, agent=agent, status=AssignmentStatus.ACTIVE, requested_at=now,
                   request_expires_at=now + timedelta(days=1), starts_at=now, expires_at=now + timedelta(days=30))
        for agent in agents)
    _policies(tag, agents)
    fixture.policies_in_force = ConditionalAccessPolicy.objects.exclude(state=PolicyState.OFF).count()

    user = User(username=f"{tag}-reader", display_name="Bench reader")
    user.set_unusable_password()
    user.save()
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY], store[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store.create()
    fixture.session_key = store.session_key

    if tokens_for_introspection:
        server_secret = tokens.RS_SECRET_PREFIX + secrets.token_urlsafe(32)
        server = ResourceServer.objects.create(name=f"{tag} resource server", client_id="rs-" + secrets.token_hex(12),
                                               secret_hash=credentials.hash_secret(server_secret))
        fixture.server_basic = _basic(server.client_id, server_secret)
        names = sorted(p.name for p in scopes)
        expires_at = now + timedelta(hours=1)
        minted = [tokens.mint(at=now, expires_at=expires_at, client_id=identities[i % AGENTS].client_id,
                              audience=resources.portal_identifier(), scopes=names, agent_id=agents[i % AGENTS].pk,
                              blueprint_id=blueprint.pk)
                  for i in range(INTROSPECTED_TOKENS)]  # JWTs (docs/oauth.md, "Access tokens are JWTs")
        fixture.token_values = [value for value, _ in minted]
        AccessToken.objects.bulk_create(
            AccessToken(token_hash=token_hash, agent=agents[i % AGENTS],
                        client_id=identities[i % AGENTS].client_id, actor_kind=ActorKind.AGENT,
                        grant_type=GrantType.CLIENT_CREDENTIALS, scopes=names, issued_at=now,
                        expires_at=expires_at, audience=resources.portal_identifier())
            for i, (_, token_hash) in enumerate(minted))
    return fixture


@transaction.atomic
def _delete(tag: str, fixture: Fixture | None) -> None:
    """Remove everything the run added (idempotent; what the server wrote too)."""
    agents = Agent.objects.filter(workspace__slug=tag)
    client_ids = list(AgentIdentity.objects.filter(agent__in=agents).values_list("client_id", flat=True))
    SignIn.objects.filter(agent__in=agents).delete()
    SignIn.objects.filter(client_id__in=client_ids).delete()
    RiskDetection.objects.filter(agent__in=agents).delete()
    AccessToken.objects.filter(agent__in=agents).delete()
    Assignment.objects.filter(agent__in=agents).delete()
    AccessPackage.objects.filter(workspace__slug=tag).delete()
    ConditionalAccessPolicy.objects.filter(name__startswith=f"{tag} ").delete()
    Credential.objects.filter(identity__agent__in=agents).delete()
    AgentIdentity.objects.filter(agent__in=agents).delete()
    agents.delete()
    ResourceServer.objects.filter(name__startswith=f"{tag} ").delete()
    if fixture is not None and fixture.session_key:
        import_module(settings.SESSION_ENGINE).SessionStore(fixture.session_key).delete()
    User.objects.filter(username__startswith=f"{tag}-").delete()
    groups = list(Workspace.objects.filter(slug=tag).values_list("owner_group_id", "contributor_group_id"))
    Workspace.objects.filter(slug=tag).delete()
    Group.objects.filter(pk__in=[pk for pair in groups for pk in pair]).delete()


# --- requests ---------------------------------------------------------------------------------------------------
def _post(host: str, path: str, authorization: str, body: str) -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\nAuthorization: {authorization}\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}")


def _ping(fixture: Fixture) -> str:
    return (f"GET /bench/ping/ HTTP/1.1\r\nHost: {fixture.host}\r\nX-Forwarded-Proto: https\r\n"
            f"Cookie: {settings.SESSION_COOKIE_NAME}={fixture.session_key}\r\n\r\n")


def _token_requests(fixture: Fixture) -> list[str]:
    return [_post(fixture.host, "/oauth/token/", basic, "grant_type=client_credentials")
            for basic in fixture.agent_basics]


def _introspection_requests(fixture: Fixture) -> list[str]:
    return [_post(fixture.host, "/oauth/introspect/", fixture.server_basic,
                  f"token={value}&token_type_hint=access_token") for value in fixture.token_values]


def _queries_per_request(fixture: Fixture, kind: str) -> tuple[int, int]:
    """SQL queries of one request and of one baseline request, through the same stack in this process."""
    client = Client(HTTP_HOST=fixture.host)

    def call():
        if kind == "token_issue":
            return client.post("/oauth/token/", "grant_type=client_credentials", secure=True,
                               content_type="application/x-www-form-urlencoded",
                               HTTP_AUTHORIZATION=fixture.agent_basics[0])
        return client.post("/oauth/introspect/", f"token={fixture.token_values[0]}", secure=True,
                           content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=fixture.server_basic)

    # The counters live in the shared cache, where the server's requests count too: raise the limits here as well.
    with override_settings(OAUTH_RATE_LIMIT_PER_CLIENT=int(RAISED_LIMIT), OAUTH_RATE_LIMIT_PER_IP=int(RAISED_LIMIT),
                           OAUTH_INTROSPECT_RATE_LIMIT=int(RAISED_LIMIT)):
        call()  # first request: caches and the policy cache filled, as on a warm server
        reset_queries()  # (a request resets the log too, which would hide what CaptureQueriesContext counts)
        with CaptureQueriesContext(connection) as ctx:
            response = call()
    if response.status_code != 200:
        raise ImproperlyConfigured(f"{kind}: the endpoint answered {response.status_code}: "
                                   f"{response.content[:300]!r}")
    measured = len(ctx.captured_queries)
    client.cookies[settings.SESSION_COOKIE_NAME] = fixture.session_key
    with override_settings(ROOT_URLCONF="devkit.bench.urls"):
        client.get("/bench/ping/", secure=True)
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            response = client.get("/bench/ping/", secure=True)
    if response.status_code != 200:
        raise ImproperlyConfigured(f"/bench/ping/ answered {response.status_code}")
    return measured, len(ctx.captured_queries)


# --- the server -------------------------------------------------------------------------------------------------
def _database_url() -> str:
    """The database this process uses, for the server (a test database under pytest, too)."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        if connection.is_in_memory_db():
            raise ImproperlyConfigured("token_issue and introspect need a database a server process can open "
                                       "(not an in-memory SQLite database).")
        return f"sqlite:///{s['NAME']}"
    if connection.vendor == "postgresql":
        auth = quote(s.get("USER") or "", safe="")
        if s.get("PASSWORD"):
            auth += ":" + quote(s["PASSWORD"], safe="")
        where = s.get("HOST") or "localhost"
        if s.get("PORT"):
            where += f":{s['PORT']}"
        query = urlsplit(os.environ.get("DATABASE_URL", "")).query
        return f"postgres://{auth}@{where}/{quote(s['NAME'], safe='')}" + (f"?{query}" if query else "")
    return os.environ["DATABASE_URL"]


class Server:
    """gunicorn on a loopback socket bound here (handed over as ``fd://``), in its own process group."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1024)
        self.port = self.listener.getsockname()[1]
        self.log = tempfile.TemporaryFile()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings"),
               "DATABASE_URL": _database_url(), "OAUTH_RATE_LIMIT_PER_CLIENT": RAISED_LIMIT,
               "OAUTH_RATE_LIMIT_PER_IP": RAISED_LIMIT, "OAUTH_INTROSPECT_RATE_LIMIT": RAISED_LIMIT}
        command = [sys.executable, "-m", "gunicorn", "devkit.bench.wsgi:application",
                   "--bind", f"fd://{self.listener.fileno()}", "--workers", str(WORKERS),
                   "--worker-class", WORKER_CLASS, "--keep-alive", "75", "--graceful-timeout", "5",
                   "--log-level", "warning", "--chdir", str(settings.BASE_DIR)]
        if WORKER_CLASS == "gthread":
            command += ["--threads", str(THREADS)]
        self.process = subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, stdout=self.log,
                                        stderr=subprocess.STDOUT, pass_fds=[self.listener.fileno()],
                                        start_new_session=True)

    def wait_ready(self, host: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        probe = (f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
                 ).encode()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ImproperlyConfigured(f"the bench server exited ({self.process.returncode}): {self.output()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe_socket:
                    probe_socket.sendall(probe)
                    if probe_socket.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ImproperlyConfigured(f"the bench server did not answer /healthz in {READY_TIMEOUT} s: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()[-2000:].decode(errors="replace")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)  # the master and its workers

    def stop(self) -> None:
        try:
            self.signal(signal.SIGTERM)
            if self.process is not None:
                try:
                    self.process.wait(15)
                except subprocess.TimeoutExpired:
                    self.signal(signal.SIGKILL)
                    self.process.wait()
        finally:
            self.listener.close()
            self.log.close()


@dataclass
class Processes:
    """The run's child processes, so that an interrupted bench (Ctrl-C, SIGTERM) stops them at once."""

    server: Server | None = None
    loadgen: subprocess.Popen | None = None
    aborted: bool = False
    others: list[Server] = field(default_factory=list)  # more servers of the same run (e.g. a baseline's)

    def check(self) -> None:
        if self.aborted:
            raise ImproperlyConfigured("the bench was interrupted")

    def abort(self) -> None:
        self.aborted = True
        if self.loadgen is not None and self.loadgen.poll() is None:
            self.loadgen.kill()
        for server in (self.server, *self.others):
            if server is not None:
                server.signal(signal.SIGKILL)


def _describe_server() -> str:
    threads = f", {THREADS} threads each" if WORKER_CLASS == "gthread" else ""
    return f"gunicorn, {WORKERS} workers ({WORKER_CLASS}{threads}), loopback"


# --- the load generator (a separate process; stdlib only once Django is set up) ----------------------------------
async def _exchange(reader, writer, request: bytes) -> tuple[int, bytes, bool]:
    """Send one request and read its response: (status, body, whether the server closes the connection)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    closes = b"\r\nconnection: close" in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        body = await reader.readexactly(int(lower[at + 17:lower.index(b"\r\n", at + 2)]))
    elif b"\r\ntransfer-encoding: chunked" in lower:
        chunks = []
        while size := int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")
        body = b"".join(chunks)
    else:
        body, closes = await reader.read(), True
    return status, body, closes


async def _open_balanced(port: int, probe: bytes, count: int, workers: int) -> tuple[list, Counter]:
    """``count`` keep-alive connections, as evenly spread over the server's worker processes as accept() lets us
    (each connection asks /bench/ping/, which names its worker). Empty when the server closes connections."""
    kept: list = []
    per_worker: Counter = Counter()
    spare: list = []
    for _attempt in range(count * 25):
        if len(kept) == count:
            break
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        status, body, closes = await _exchange(reader, writer, probe)
        if status != 200:
            raise RuntimeError(f"/bench/ping/ answered {status}: {body[:200]!r}")
        if closes:
            writer.close()
            return [], per_worker
        pid = body.split()[-1].decode()
        if per_worker[pid] < -(-count // workers):
            per_worker[pid] += 1
            kept.append((reader, writer))
        else:
            spare.append((pid, reader, writer))
    for pid, reader, writer in spare:
        if len(kept) < count:  # could not balance (e.g. a worker still booting): use what we have
            per_worker[pid] += 1
            kept.append((reader, writer))
        else:
            writer.close()
    return kept, per_worker


def _serves(pid: str, database: str) -> bool:
    if not database:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            title = cmdline.read().decode(errors="replace")
    except OSError:
        return False
    return f" {database} " in title  # "postgres: 15/main: postgres portal_bench 127.0.0.1(…) idle"


def _cpu_seconds(group: int, database: str) -> tuple[float, float, float]:
    """CPU seconds used so far by the server's process group, by the PostgreSQL backends serving ``database``
    (their process titles name it), and by the whole machine (busy time of all CPUs) — Linux ``/proc``; zeros
    elsewhere."""
    if not os.path.isdir("/proc"):
        return 0.0, 0.0, 0.0
    server = postgres = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    name, rest = stat.read().rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()  # after the name: state, ppid, pgrp, …, utime (11), stime (12)
            if int(fields[2]) == group:
                server += int(fields[11]) + int(fields[12])
            elif name.endswith("(postgres") and _serves(entry, database):
                postgres += int(fields[11]) + int(fields[12])
    with open("/proc/stat") as stat:
        times = [int(t) for t in stat.readline().split()[1:]]
    busy = sum(times) - times[3] - times[4]  # all but idle and iowait
    ticks = os.sysconf("SC_CLK_TCK")
    return server / ticks, postgres / ticks, busy / ticks


def _percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


async def _phase(spec: dict, phase: dict) -> dict:
    port, requests = spec["port"], [r.encode() for r in phase["requests"]]
    expect, n = phase["expect"].encode(), phase["n"]
    connections, per_worker = await _open_balanced(port, spec["probe"].encode(), spec["connections"],
                                                   spec["workers"])
    if not connections:
        connections = [None] * spec["connections"]  # the server closes after each response: connect per request
    next_index = iter(range(n))
    latencies: list[float] = []
    errors: Counter = Counter()

    async def drive(pair):
        for index in next_index:
            started = time.perf_counter()
            try:
                if pair is None:
                    pair = await asyncio.open_connection("127.0.0.1", port)
                status, body, closes = await _exchange(*pair, requests[index % len(requests)])
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                errors[type(error).__name__] += 1
                closes = True
            else:
                latencies.append(time.perf_counter() - started)
                if status != 200 or expect not in body:
                    errors[f"http_{status}"] += 1
            if closes and pair is not None:
                pair[1].close()
                pair = None
        if pair is not None:
            pair[1].close()

    group, database = spec["server_group"], spec["database"]
    before, cpu, started = _cpu_seconds(group, database), time.process_time(), time.perf_counter()
    await asyncio.gather(*(drive(pair) for pair in connections))
    seconds = time.perf_counter() - started
    server_cpu, postgres_cpu, busy = (b - a for a, b in zip(before, _cpu_seconds(group, database), strict=True))
    latencies.sort()
    kept = {"latencies_ms": [latency * 1000 for latency in latencies]} if phase.get("keep_latencies") else {}
    return {**kept, "name": phase["name"], "n": n, "seconds": seconds, "errors": sum(errors.values()),
            "error_kinds": dict(errors), "rps": n / seconds if seconds else 0.0,
            "p50_ms": _percentile(latencies, 0.50) * 1000, "p99_ms": _percentile(latencies, 0.99) * 1000,
            "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
            "loadgen_cpu_share": (time.process_time() - cpu) / seconds if seconds else 0.0,
            "server_cpu_ms_per_request": server_cpu / n * 1000, "postgres_cpu_ms_per_request": postgres_cpu / n * 1000,
            "machine_busy_cpus": busy / seconds if seconds else 0.0,
            "connections_per_worker": sorted(per_worker.values(), reverse=True)}


async def _phases(spec: dict) -> list[dict]:
    return [await _phase(spec, phase) for phase in spec["phases"]]


def loadgen_main() -> None:
    """Entry point of the load generator process: the spec as JSON on stdin, the results as JSON on stdout."""
    spec = json.load(sys.stdin)
    json.dump(asyncio.run(_phases(spec)), sys.stdout)


def _load(processes: Processes, fixture: Fixture, phases: list[dict]) -> dict[str, dict]:
    server = processes.server
    spec = {"port": server.port, "server_group": server.process.pid, "probe": _ping(fixture),
            "database": str(connection.settings_dict["NAME"]) if connection.vendor == "postgresql" else "",
            "connections": CONNECTIONS, "workers": WORKERS, "phases": phases}
    code = "import django; django.setup(); from devkit.bench.oauth import loadgen_main; loadgen_main()"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings")}
    processes.loadgen = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, env=env, cwd=settings.BASE_DIR)
    try:
        out, err = processes.loadgen.communicate(json.dumps(spec), timeout=LOADGEN_TIMEOUT)
    finally:
        if processes.loadgen.poll() is None:
            processes.loadgen.kill()
            processes.loadgen.wait()
    if processes.loadgen.returncode != 0:
        raise ImproperlyConfigured(f"the load generator failed ({processes.loadgen.returncode}): {err[-2000:]}")
    return {result["name"]: result for result in json.loads(out)}


# --- the scenarios ----------------------------------------------------------------------------------------------
def _run(kind: str, n: int, processes: Processes) -> tuple[Measured, str, tuple[float, int]]:
    """In a thread of its own (its own database connection, autocommit): data, server, load, clean-up."""
    tag = f"oauthbench-{secrets.token_hex(4)}"
    fixture = None
    server = None
    try:
        fixture = _create(tag, tokens_for_introspection=kind == "introspect")
        queries, baseline_queries = _queries_per_request(fixture, kind)
        requests, expect = ((_token_requests(fixture), '"access_token"') if kind == "token_issue"
                            else (_introspection_requests(fixture), '"active": true'))
        warm = min(2000, max(n // 5, min(n, 200)))
        ping = {"requests": [_ping(fixture)], "expect": "ok "}
        processes.check()
        server = processes.server = Server()
        server.start()
        processes.check()
        server.wait_ready(fixture.host)
        results = _load(processes, fixture, [
            {"name": "warm_ping", "n": warm, **ping}, {"name": "warm", "n": warm, "requests": requests,
                                                        "expect": expect},
            {"name": "ping", "n": n, **ping}, {"name": kind, "n": n, "requests": requests, "expect": expect}])
    finally:
        if server is not None:
            server.stop()
        try:
            _delete(tag, fixture)
        finally:
            connection.close()
    extra = figures(kind, results[kind], results["ping"], fixture, queries=queries,
                    baseline_queries=baseline_queries, warm=warm)
    return (Measured(results[kind]["seconds"], queries * n, extra), "trivial_authenticated_view_same_server",
            (results["ping"]["seconds"], baseline_queries * n))


def figures(kind: str, measured: dict, base: dict, fixture: Fixture, *, queries: int, baseline_queries: int,
            warm: int) -> dict:
    """The figures of a run (``Measured.extra``): the load generator's results for ``kind`` and for the trivial
    page (``base``), with the set-up they were measured on."""
    rate_name = "tokens_per_second" if kind == "token_issue" else "introspections_per_second"
    return {
        rate_name: round(measured["rps"], 1), "p50_ms": round(measured["p50_ms"], 2),
        "p99_ms": round(measured["p99_ms"], 2), "max_ms": round(measured["max_ms"], 2),
        "errors": measured["errors"] + base["errors"],
        "error_kinds": {**base["error_kinds"], **measured["error_kinds"]},
        "baseline_requests_per_second": round(base["rps"], 1), "baseline_p50_ms": round(base["p50_ms"], 2),
        "baseline_p99_ms": round(base["p99_ms"], 2), "queries_per_request": queries,
        "baseline_queries_per_request": baseline_queries, "warmup_requests": warm,
        "server": _describe_server(), "keep_alive": WORKER_CLASS != "sync",
        "loadgen": f"separate process, asyncio, {CONNECTIONS} HTTP/1.1 keep-alive connections",
        "connections_per_worker": measured["connections_per_worker"],
        "loadgen_cpu_share": round(measured["loadgen_cpu_share"], 2),
        "server_cpu_ms_per_request": round(measured["server_cpu_ms_per_request"], 2),
        "baseline_server_cpu_ms_per_request": round(base["server_cpu_ms_per_request"], 2),
        "postgres_cpu_ms_per_request": round(measured["postgres_cpu_ms_per_request"], 2),
        "baseline_postgres_cpu_ms_per_request": round(base["postgres_cpu_ms_per_request"], 2),
        "machine_busy_cpus": round(measured["machine_busy_cpus"], 2), "machine_cpus": os.cpu_count(),
        "baseline_machine_busy_cpus": round(base["machine_busy_cpus"], 2), "agents": AGENTS,
        "policies_in_force": fixture.policies_in_force,
        "cache": settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1],
        "rate_limits": "raised for the bench (OAUTH_RATE_LIMIT_PER_CLIENT/_PER_IP, OAUTH_INTROSPECT_RATE_LIMIT)",
    }


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _over_http(kind: str, n: int, run=None) -> tuple[Measured, str, tuple[float, int]]:
    """``run(processes)`` (default: ``_run`` of ``kind``) in a helper thread; its child processes stopped at once
    if the bench is interrupted."""
    if connection.vendor == "sqlite":
        _database_url()  # fail before closing an in-memory database
        if connection.in_atomic_block:
            # The command's transaction began with BEGIN IMMEDIATE and holds SQLite's write lock; nothing was
            # written in it, and the server must write sign-ins and tokens: close it (SQLite rolls it back).
            connection.close()
    processes = Processes()
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth-bench")
    try:
        work = run or (lambda processes: _run(kind, n, processes))
        measured, baseline_name, baseline = pool.submit(work, processes).result()
    except BaseException:
        processes.abort()  # the helper thread then stops waiting, and removes the bench rows
        raise
    finally:
        pool.shutdown(wait=True)
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    print(json.dumps({"scenario": kind, **measured.extra}), file=sys.stderr)
    return measured, baseline_name, baseline


# token_issue is registered by devkit.bench.oauth_jwt: this run, then a django-oauth-toolkit baseline.
@scenario("introspect")
def introspect(n):
    """n RFC 7662 introspections of live tokens by a resource server vs. n requests of a trivial signed-in page."""
    return _over_http("introspect", n)


introspect.default_n = 8000
introspect.serves_http = True
