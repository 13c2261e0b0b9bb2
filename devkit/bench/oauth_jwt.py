"""Benchmarks of the JWT authorization server (docs/oauth.md), registered with ``devkit.bench``.

``token_issue``: the portal's client-credentials endpoint over HTTP (``devkit.bench.oauth``: gunicorn with 2 sync
workers, 20 agents, 10 conditional-access policies in force) against a stock django-oauth-toolkit server doing the
same grant (``devkit.bench.dot_baseline``: a minimal Django project in a database of its own, an application with a
plain client secret, no policies), both up at once and driven by the same load generator in alternating rounds
(ours then DOT, DOT then ours, …: this machine's speed drifts between runs and within one by more than the margin
being measured). ``baseline`` is that DOT server; its figures go into ``extra`` as ``dot_*``, beside
``tokens_per_second_vs_dot``: the median of the rounds' ratios (ours ÷ DOT's tokens/s), each round's figures too.

``jwks_verify``: an outside library verifying the portal's tokens offline against the published JWKS (signature,
``typ``, issuer, audience, expiry), as a resource server does: PyJWT (measured) and joserfc (in ``extra``), in CPU
seconds of this one process, against the floor of the same work — the bare ECDSA P-256 verifications with
``cryptography``.

``code_exchange``: authorization codes exchanged for tokens over HTTP by the load generator (PKCE verified, consent
found), once the authorization-code grant is installed (``governance.oauth``). On PostgreSQL the exchange runs on its
fast path (``governance.oauth.fastpath``: one statement reads and marks the code used, one writes the three rows);
``extra`` says which path served it (``exchange_path``) beside the queries and server CPU per exchange.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import quote, urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, reset_queries, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.utils import timezone

from agents.models import Agent
from devkit.bench import oauth
from devkit.bench.portal import scenario
from governance.access.models import AccessPackage
from governance.oauth import authorize
from governance.oauth import fastpath as exchange_fastpath
from governance.oauth.choices import AuthMethod, ClientApproval, ClientSource
from governance.oauth.models import AuthorizationCode, Consent, OAuthClient, RefreshToken
from governance.signin import resources, tokens
from governance.signin.models import AccessToken, SignIn
from governance.signing import keys as signing
from portal.models import DirectoryRole, DirectoryRoleAssignment, User

DOT_APPLICATIONS = oauth.AGENTS
DOT_BASELINE_NAME = "django-oauth-toolkit client credentials"
DOT_SETTINGS = "devkit.bench.dot_baseline.settings"
TARGET_VS_DOT = 1.2
TARGET_P99_MS = 30.0
TARGET_EXCHANGES = 300.0
ROUNDS = 6  # token_issue: alternating rounds per server


# --- the django-oauth-toolkit baseline --------------------------------------------------------------------------
class DotServer(oauth.Server):
    """gunicorn serving ``devkit.bench.dot_baseline`` with the portal server's options (workers, class, keep-alive)."""

    def __init__(self, database_url: str):
        super().__init__()
        self.database_url = database_url

    def start(self) -> None:
        command = [sys.executable, "-m", "gunicorn", "devkit.bench.dot_baseline.wsgi:application",
                   "--bind", f"fd://{self.listener.fileno()}", "--workers", str(oauth.WORKERS),
                   "--worker-class", oauth.WORKER_CLASS, "--keep-alive", "75", "--graceful-timeout", "5",
                   "--log-level", "warning", "--chdir", str(settings.BASE_DIR)]
        if oauth.WORKER_CLASS == "gthread":
            command += ["--threads", str(oauth.THREADS)]
        self.process = subprocess.Popen(command, env=_dot_env(self.database_url), cwd=settings.BASE_DIR,
                                        stdout=self.log, stderr=subprocess.STDOUT, pass_fds=[self.listener.fileno()],
                                        start_new_session=True)


def _dot_env(database_url: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    return {**env, "DJANGO_SETTINGS_MODULE": DOT_SETTINGS, "DOT_BASELINE_DATABASE_URL": database_url}


def _pg_admin():
    """A connection to the maintenance database of the portal's PostgreSQL server (autocommit)."""
    import psycopg

    s = connection.settings_dict
    return psycopg.connect(dbname="postgres", user=s.get("USER") or None, password=s.get("PASSWORD") or None,
                           host=s.get("HOST") or None, port=s.get("PORT") or None, autocommit=True)


class DotDatabase:
    """The baseline's own database: created empty (PostgreSQL: ``<portal database>_dot``; SQLite: a temporary
    file), dropped when the run ends."""

    def __init__(self):
        self.tmp = None
        if connection.vendor == "postgresql":
            self.name = f"{connection.settings_dict['NAME']}_dot"[:63]
            portal = urlsplit(oauth._database_url())
            self.url = portal._replace(path="/" + quote(self.name, safe="")).geturl()
        else:
            self.tmp = tempfile.TemporaryDirectory(prefix="dot-baseline-")
            self.name = ""
            self.url = f"sqlite:///{self.tmp.name}/dot.sqlite3"

    def create(self) -> None:
        if self.tmp is None:
            with _pg_admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.name}"')
                admin.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
            return
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


SETUP = """
import json, sys
import django
django.setup()
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import Application
pairs = json.load(sys.stdin)
for client_id, secret in pairs:
    Application.objects.create(name=client_id, client_id=client_id, client_secret=secret, hash_client_secret=False,
                               client_type=Application.CLIENT_CONFIDENTIAL,
                               authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS)
client = Client()
def call():
    return client.post("/o/token/", "grant_type=client_credentials", content_type="application/x-www-form-urlencoded",
                       secure=True, HTTP_AUTHORIZATION=sys.argv[1])
call()
reset_queries()
with CaptureQueriesContext(connection) as ctx:
    response = call()
assert response.status_code == 200, response.content[:300]
print(len(ctx.captured_queries))
"""


def _dot_prepare(database: DotDatabase) -> tuple[list[str], int]:
    """Migrate the baseline's database, add its applications; their ``Basic`` headers and the SQL queries of one
    token request."""
    env = _dot_env(database.url)
    migrate = subprocess.run([sys.executable, "-m", "django", "migrate", "--noinput", "-v0"], env=env,
                             cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=300, check=False)
    if migrate.returncode != 0:
        raise ImproperlyConfigured(f"the DOT baseline's migrate failed: {migrate.stderr[-2000:]}")
    pairs = [(f"dot-{secrets.token_hex(8)}", secrets.token_urlsafe(32)) for _ in range(DOT_APPLICATIONS)]
    basics = [oauth._basic(client_id, secret) for client_id, secret in pairs]
    setup = subprocess.run([sys.executable, "-c", SETUP, basics[0]], input=json.dumps(pairs), env=env,
                           cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=300, check=False)
    if setup.returncode != 0:
        raise ImproperlyConfigured(f"the DOT baseline's set-up failed: {setup.stderr[-2000:]}")
    return basics, int(setup.stdout.split()[-1])


def _drive(server: oauth.Server, database: str, host: str, phases: list[dict],
           processes: oauth.Processes) -> dict[str, dict]:
    """The load generator of ``devkit.bench.oauth`` against ``server`` (its probe: ``/bench/ping/``, no cookie)."""
    spec = {"port": server.port, "server_group": server.process.pid, "database": database,
            "probe": f"GET /bench/ping/ HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n\r\n",
            "connections": oauth.CONNECTIONS, "workers": oauth.WORKERS, "phases": phases}
    code = "import django; django.setup(); from devkit.bench.oauth import loadgen_main; loadgen_main()"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings")}
    processes.loadgen = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True, env=env, cwd=settings.BASE_DIR)
    try:
        out, err = processes.loadgen.communicate(json.dumps(spec), timeout=oauth.LOADGEN_TIMEOUT)
    finally:
        if processes.loadgen.poll() is None:
            processes.loadgen.kill()
            processes.loadgen.wait()
    if processes.loadgen.returncode != 0:
        raise ImproperlyConfigured(f"the load generator failed ({processes.loadgen.returncode}): {err[-2000:]}")
    return {result["name"]: result for result in json.loads(out)}


def _rounds(n: int) -> list[int]:
    """How many tokens each round asks of each server: ``ROUNDS`` rounds (fewer for a small n), n in all."""
    count = max(1, min(ROUNDS, n // 100))
    return [n // count + (1 if index < n % count else 0) for index in range(count)]


def _combined(results: list[dict]) -> dict:
    """The load generator's figures of several phases as one phase (latencies pooled, CPU per request weighted)."""
    n, seconds = sum(r["n"] for r in results), sum(r["seconds"] for r in results)
    latencies = sorted(latency for r in results for latency in r["latencies_ms"])
    kinds: dict[str, int] = {}
    for r in results:
        for kind, count in r["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + count
    return {"n": n, "seconds": seconds, "rps": n / seconds if seconds else 0.0, "errors": sum(kinds.values()),
            "error_kinds": kinds, "p50_ms": oauth._percentile(latencies, 0.50),
            "p99_ms": oauth._percentile(latencies, 0.99), "max_ms": latencies[-1] if latencies else 0.0,
            "connections_per_worker": results[0]["connections_per_worker"],
            **{key: sum(r[key] * r["n"] for r in results) / n if n else 0.0
               for key in ("server_cpu_ms_per_request", "postgres_cpu_ms_per_request")},
            **{key: sum(r[key] * r["seconds"] for r in results) / seconds if seconds else 0.0
               for key in ("loadgen_cpu_share", "machine_busy_cpus")}}


def _paired(n: int, processes: oauth.Processes) -> tuple[oauth.Measured, str, tuple[float, int]]:
    """Both servers up at once; rounds alternate which one the load generator drives first (ours, DOT; DOT, ours;
    …), so that a change of the machine's speed during the run weighs on both alike."""
    tag = f"oauthbench-{secrets.token_hex(4)}"
    fixture = server = dot_server = None
    database = DotDatabase()
    try:
        fixture = oauth._create(tag, tokens_for_introspection=False)
        queries, baseline_queries = oauth._queries_per_request(fixture, "token_issue")
        ours_requests = oauth._token_requests(fixture)
        database.create()
        basics, dot_queries = _dot_prepare(database)
        dot_requests = [oauth._post(fixture.host, "/o/token/", basic, "grant_type=client_credentials")
                        for basic in basics]
        processes.check()
        server = processes.server = oauth.Server()
        server.start()
        dot_server = DotServer(database.url)
        processes.others.append(dot_server)
        dot_server.start()
        processes.check()
        server.wait_ready(fixture.host)
        dot_server.wait_ready(fixture.host)
        warm = min(2000, max(n // 5, min(n, 200)))
        ping = {"requests": [oauth._ping(fixture)], "expect": "ok "}
        token = {"expect": '"access_token"', "keep_latencies": True}

        def ours(name: str, count: int) -> dict:
            return oauth._load(processes, fixture, [{"name": name, "n": count, "requests": ours_requests,
                                                     **token}])[name]

        def dot(name: str, count: int) -> dict:
            return _drive(dot_server, database.name, fixture.host, [{"name": name, "n": count,
                                                                     "requests": dot_requests, **token}],
                          processes)[name]

        first = oauth._load(processes, fixture, [{"name": "warm_ping", "n": warm, **ping},
                                                 {"name": "ping", "n": n, **ping}])
        ours("warm", warm)
        dot("dot_warm", warm)
        ours_rounds, dot_rounds = [], []
        for index, count in enumerate(_rounds(n)):
            if index % 2 == 0:
                ours_rounds.append(ours("token_issue", count))
                dot_rounds.append(dot("dot", count))
            else:
                dot_rounds.append(dot("dot", count))
                ours_rounds.append(ours("token_issue", count))
    except BaseException:
        processes.abort()
        raise
    finally:
        for running in (server, dot_server):
            if running is not None:
                running.stop()
        try:
            database.drop()
        finally:
            try:
                oauth._delete(tag, fixture)
            finally:
                connection.close()
    mine, theirs = _combined(ours_rounds), _combined(dot_rounds)
    versus = [o["rps"] / d["rps"] for o, d in zip(ours_rounds, dot_rounds, strict=True) if d["rps"]]
    extra = {
        **oauth.figures("token_issue", mine, first["ping"], fixture, queries=queries,
                        baseline_queries=baseline_queries, warm=warm),
        "dot_tokens_per_second": round(theirs["rps"], 1), "dot_p50_ms": round(theirs["p50_ms"], 2),
        "dot_p99_ms": round(theirs["p99_ms"], 2), "dot_errors": theirs["errors"],
        "dot_error_kinds": theirs["error_kinds"], "dot_queries_per_request": dot_queries,
        "dot_server_cpu_ms_per_request": round(theirs["server_cpu_ms_per_request"], 2),
        "dot_postgres_cpu_ms_per_request": round(theirs["postgres_cpu_ms_per_request"], 2),
        "dot_server": f"{oauth._describe_server()}; django-oauth-toolkit, plain client secret, no middleware",
        "rounds": len(ours_rounds),
        "tokens_per_second_rounds": [round(r["rps"], 1) for r in ours_rounds],
        "dot_tokens_per_second_rounds": [round(r["rps"], 1) for r in dot_rounds],
        "tokens_per_second_vs_dot_rounds": [round(v, 2) for v in versus],
        "tokens_per_second_vs_dot": round(statistics.median(versus), 2) if versus else None,
        "target_tokens_per_second_vs_dot": TARGET_VS_DOT, "target_p99_ms": TARGET_P99_MS,
        "ping_baseline": "trivial_authenticated_view_same_server",
        "ping_baseline_seconds": round(first["ping"]["seconds"], 4),
    }
    return (oauth.Measured(mine["seconds"], queries * n, extra), DOT_BASELINE_NAME,
            (theirs["seconds"], dot_queries * n))


@scenario("token_issue")
def token_issue(n):
    """n client-credentials tokens over HTTP (20 agents, 10 conditional-access policies in force) vs. n tokens from
    a stock django-oauth-toolkit server (plain client secret, no policies) on the same machine, same load, in
    alternating rounds; ``tokens_per_second_vs_dot`` is the median of the rounds' ratios."""
    measured, baseline_name, baseline = oauth._over_http("token_issue", n, run=lambda processes: _paired(n, processes))
    versus = {key: value for key, value in measured.extra.items() if key.startswith(("dot_", "tokens_per", "target"))}
    print(json.dumps({"scenario": "token_issue_dot_baseline", **versus}), file=sys.stderr)
    return measured, baseline_name, baseline


token_issue.default_n = 6000
token_issue.serves_http = True


# --- offline verification against the published JWKS -----------------------------------------------------------
RESOURCE = "https://bench.invalid/mcp"


def _published_jwks() -> dict:
    """The JWKS as a resource server fetches it: from the metadata's ``jwks_uri`` when the URL is installed."""
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("oauth-jwks")
    except NoReverseMatch:
        return signing.jwks()
    response = Client(HTTP_HOST=oauth._host()).get(url, secure=True)
    if response.status_code != 200:
        raise ImproperlyConfigured(f"{url} answered {response.status_code}")
    return response.json()


def _cpu(work) -> float:
    started = time.process_time()
    work()
    return time.process_time() - started


@scenario("jwks_verify")
def jwks_verify(n):
    """n of the portal's tokens verified offline by PyJWT against the published JWKS (CPU seconds of one process)
    vs. the bare ECDSA P-256 verifications of the same tokens (the floor); joserfc's figure in ``extra``."""
    import jwt
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import KeySet

    now = timezone.now()
    values = [tokens.mint(at=now, expires_at=now + timedelta(minutes=10), client_id=f"bench-{i % 20}",
                          audience=RESOURCE, scopes=["Agent.Read"])[0] for i in range(n)]
    jwks = _published_jwks()
    issuer = settings.PORTAL_BASE_URL
    by_kid = {jwk["kid"]: jwt.PyJWK(jwk) for jwk in jwks["keys"]}
    joserfc_keys = KeySet.import_key_set(jwks)
    raw_keys = {kid: key.key for kid, key in by_kid.items()}

    def pyjwt_all():
        for value in values:
            header = jwt.get_unverified_header(value)
            if header.get("typ") != "at+jwt":
                raise ImproperlyConfigured("not an access token")
            jwt.decode(value, by_kid[header["kid"]], algorithms=["ES256"], audience=RESOURCE, issuer=issuer,
                       options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]})

    def joserfc_all():
        registry = jose_jwt.JWTClaimsRegistry(iss={"essential": True, "value": issuer},
                                              aud={"essential": True, "value": RESOURCE}, exp={"essential": True})
        for value in values:
            token = jose_jwt.decode(value, joserfc_keys, algorithms=["ES256"])
            if token.header.get("typ") != "at+jwt":
                raise ImproperlyConfigured("not an access token")
            registry.validate(token.claims)

    def floor():
        for value in values:
            head, payload, signature = value.rsplit(".", 2)[0], value.split(".")[1], value.rsplit(".", 1)[1]
            kid = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]
            raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
            try:
                raw_keys[kid].verify(der, f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
            except InvalidSignature as error:
                raise ImproperlyConfigured("a bench token did not verify") from error

    floor()  # warm: imports, key objects
    floor_seconds, pyjwt_seconds, joserfc_seconds = _cpu(floor), _cpu(pyjwt_all), _cpu(joserfc_all)

    measured = oauth.Measured(pyjwt_seconds, 0, {
        "pyjwt_tokens_per_cpu_second": round(n / pyjwt_seconds, 1),
        "joserfc_tokens_per_cpu_second": round(n / joserfc_seconds, 1),
        "ecdsa_floor_tokens_per_cpu_second": round(n / floor_seconds, 1),
        "libraries": f"PyJWT {jwt.__version__}, joserfc {_version('joserfc')}, cryptography {_version('cryptography')}",
        "checks": "signature (kid from the JWKS), typ at+jwt, iss, aud, exp",
        "keys_published": len(jwks["keys"]), "cpu": "one process, time.process_time",
    })
    return measured, "ecdsa_p256_verify_same_tokens", (floor_seconds, 0)


jwks_verify.default_n = 5000


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


# --- authorization code → token ---------------------------------------------------------------------------------
REDIRECT_URI = "http://127.0.0.1:9/callback"
CODE_LIFETIME = timedelta(minutes=30)  # the bench's codes outlive set-up and warm-up on a busy machine


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@transaction.atomic
def _codes_create(fixture: oauth.Fixture, count: int) -> list[str]:
    """A public client (one of the bench agents, approved), a person who holds the bench scopes through a directory
    role and has consented, and ``count`` authorization codes for the portal API as ``authorize.code_issue`` makes
    them (S256 challenge, only the hash stored, a family each, ``offline_access`` for a refresh token too) — written
    in bulk rather than one audited request each. Returns the token requests' bodies."""
    agent = Agent.objects.filter(workspace__slug=fixture.tag).order_by("name").first()
    scopes = list(AccessPackage.objects.get(workspace__slug=fixture.tag).permissions.all())
    now = timezone.now()
    client = OAuthClient.objects.create(
        agent=agent, client_id=f"{fixture.tag}-public", source=ClientSource.DYNAMIC, client_name="Bench client",
        application_type="native", redirect_uris=[REDIRECT_URI], grant_types=["authorization_code", "refresh_token"],
        response_types=["code"], token_endpoint_auth_method=AuthMethod.NONE, approval=ClientApproval.APPROVED,
        decided_at=now, created_at=now)
    person = User.objects.get(username=f"{fixture.tag}-reader")
    role = DirectoryRole.objects.create(key=f"{fixture.tag}-role", name=f"{fixture.tag} role")
    role.permissions.set(scopes)
    DirectoryRoleAssignment.objects.create(user=person, role=role)
    resource = resources.portal_identifier()
    names = sorted(p.name for p in scopes)
    Consent.objects.create(user=person, client=client, resource=resource, scopes=names, granted_at=now)
    bodies, rows = [], []
    for _ in range(count):
        code, (verifier, challenge) = secrets.token_urlsafe(32), _pkce()
        rows.append(AuthorizationCode(
            code_hash=authorize.hash_value(code), client=client, user=person, redirect_uri=REDIRECT_URI,
            resource=resource, scopes=names, offline_access=True, code_challenge=challenge,
            family=secrets.token_hex(16), created_at=now, expires_at=now + CODE_LIFETIME))
        bodies.append(urlencode({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                                 "code_verifier": verifier, "client_id": client.client_id}))
    AuthorizationCode.objects.bulk_create(rows, batch_size=2000)
    return bodies


@transaction.atomic
def _codes_delete(tag: str) -> None:
    clients = OAuthClient.objects.filter(agent__workspace__slug=tag)
    families = AuthorizationCode.objects.filter(client__in=clients).values_list("family", flat=True)
    AccessToken.objects.filter(family__in=families).delete()
    SignIn.objects.filter(client_id__in=clients.values_list("client_id", flat=True)).delete()
    RefreshToken.objects.filter(client__in=clients).delete()
    AuthorizationCode.objects.filter(client__in=clients).delete()
    Consent.objects.filter(client__in=clients).delete()
    clients.delete()
    DirectoryRoleAssignment.objects.filter(role__key=f"{tag}-role").delete()
    DirectoryRole.objects.filter(key=f"{tag}-role").delete()


def _public_post(host: str, body: str) -> str:
    return (f"POST /oauth/token/ HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}")


def _queries_per_exchange(fixture: oauth.Fixture, bodies: list[str]) -> int:
    """SQL queries of one exchange through the same stack in this process (the first warms the caches)."""
    client = Client(HTTP_HOST=fixture.host)
    raised = int(oauth.RAISED_LIMIT)
    with override_settings(OAUTH_RATE_LIMIT_PER_CLIENT=raised, OAUTH_RATE_LIMIT_PER_IP=raised):
        client.post("/oauth/token/", bodies[0], secure=True, content_type="application/x-www-form-urlencoded")
        reset_queries()
        with CaptureQueriesContext(connection) as ctx:
            response = client.post("/oauth/token/", bodies[1], secure=True,
                                   content_type="application/x-www-form-urlencoded")
    if response.status_code != 200:
        raise ImproperlyConfigured(f"code_exchange: the endpoint answered {response.status_code}: "
                                   f"{response.content[:300]!r}")
    return len(ctx.captured_queries)


def _exchange_run(n: int, processes: oauth.Processes) -> tuple[oauth.Measured, str, tuple[float, int]]:
    """In a thread of its own (its own connection, autocommit): data, server, load, clean-up."""
    tag = f"oauthbench-{secrets.token_hex(4)}"
    fixture = server = None
    warm = min(1000, max(n // 5, min(n, 100)))
    try:
        fixture = oauth._create(tag, tokens_for_introspection=False)
        bodies = _codes_create(fixture, 2 + warm + n)
        queries = _queries_per_exchange(fixture, bodies[:2])
        requests = [_public_post(fixture.host, body) for body in bodies[2:]]
        ping = {"requests": [oauth._ping(fixture)], "expect": "ok "}
        processes.check()
        server = processes.server = oauth.Server()
        server.start()
        processes.check()
        server.wait_ready(fixture.host)
        results = oauth._load(processes, fixture, [
            {"name": "warm_ping", "n": warm, **ping},
            {"name": "warm", "n": warm, "requests": requests[:warm], "expect": '"refresh_token"'},
            {"name": "ping", "n": n, **ping},
            {"name": "code_exchange", "n": n, "requests": requests[warm:], "expect": '"refresh_token"'}])
    finally:
        if server is not None:
            server.stop()
        try:
            _codes_delete(tag)
            oauth._delete(tag, fixture)
        finally:
            connection.close()
    measured, base = results["code_exchange"], results["ping"]
    extra = {
        "exchanges_per_second": round(measured["rps"], 1), "p50_ms": round(measured["p50_ms"], 2),
        "p99_ms": round(measured["p99_ms"], 2), "max_ms": round(measured["max_ms"], 2),
        "errors": measured["errors"] + base["errors"],
        "error_kinds": {**base["error_kinds"], **measured["error_kinds"]},
        "target_exchanges_per_second": TARGET_EXCHANGES,
        "baseline_requests_per_second": round(base["rps"], 1), "baseline_p99_ms": round(base["p99_ms"], 2),
        "server_cpu_ms_per_request": round(measured["server_cpu_ms_per_request"], 2),
        "postgres_cpu_ms_per_request": round(measured["postgres_cpu_ms_per_request"], 2),
        "machine_busy_cpus": round(measured["machine_busy_cpus"], 2), "machine_cpus": os.cpu_count(),
        "queries_per_request": queries, "warmup_requests": warm, "server": oauth._describe_server(),
        "exchange_path": "prepared statements" if exchange_fastpath.enabled() else "ORM",
        "flow": "public client, PKCE S256 verified, consent on record, access + refresh token, sign-in logged",
        "policies_in_force": fixture.policies_in_force,
    }
    return (oauth.Measured(measured["seconds"], queries * n, extra), "trivial_authenticated_view_same_server",
            (base["seconds"], 0))


@scenario("code_exchange")
def code_exchange(n):
    """n authorization codes exchanged for tokens over HTTP (PKCE, consent, refresh token) vs. n requests of a
    trivial signed-in page on the same server."""
    if connection.vendor == "sqlite" and connection.in_atomic_block:
        connection.close()  # the server writes: release SQLite's write lock (as devkit.bench.oauth does)
    processes = oauth.Processes()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth-bench")
    try:
        measured, baseline_name, baseline = pool.submit(_exchange_run, n, processes).result()
    except BaseException:
        processes.abort()
        raise
    finally:
        pool.shutdown(wait=True)
    print(json.dumps({"scenario": "code_exchange", **measured.extra}), file=sys.stderr)
    return measured, baseline_name, baseline


code_exchange.default_n = 2000
code_exchange.serves_http = True
