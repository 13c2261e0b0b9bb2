"""``token_issue_federated``: agents without secrets at the token endpoint, over HTTP (docs/oauth.md, "Agents
without secrets").

The same server, load generator and data as ``token_issue`` (``devkit.bench.oauth``: gunicorn with 2 sync workers,
20 agents, ten conditional-access policies in force), plus a federated credential per agent trusting a local OpenID
issuer (``devkit.federation_issuer``: a loopback HTTP server, plain http allowed for the run). Each request presents
a fresh Kubernetes-style service-account token as its ``client_assertion`` (a token is accepted once), signed
before the run so that the load generator only sends bytes. The issuer's JWKS is fetched during the warm-up and
then served from the cache, as in steady production use. In the same run the client-secret ``token_issue`` load is
measured on the same server, and ``tokens_per_second_vs_secret`` = federated rate ÷ secret rate (target ≥ 0.7).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

from django.db import connection

from agents.models import Agent, FederatedCredential
from devkit.bench import oauth
from devkit.bench.portal import scenario

TARGET_VS_SECRET = 0.7
AUDIENCE = "https://portal.bench.invalid"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _federated_request(host: str, client_id: str, token: str) -> str:
    body = urlencode({"grant_type": "client_credentials", "client_id": client_id,
                      "client_assertion_type": CLIENT_ASSERTION_TYPE, "client_assertion": token})
    return (f"POST /oauth/token/ HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Proto: https\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n{body}")


def _run(n: int, processes: oauth.Processes) -> tuple[dict, dict, dict, object]:
    from devkit.federation_issuer import FederationIssuer

    tag = f"oauthbench-{secrets.token_hex(4)}"
    fixture = server = None
    issuer = FederationIssuer().start()
    try:
        fixture = oauth._create(tag, tokens_for_introspection=False)
        agents = list(Agent.objects.filter(workspace__slug=tag).select_related("identity").order_by("name"))
        FederatedCredential.objects.bulk_create(
            FederatedCredential(agent=agent, name="bench", issuer=issuer.issuer, audience=AUDIENCE,
                                subject=f"system:serviceaccount:bench:{agent.name}") for agent in agents)
        warm = min(2000, max(n // 5, min(n, 200)))
        federated = [_federated_request(fixture.host, agents[i % len(agents)].identity.client_id,
                                        issuer.service_account_token("bench", agents[i % len(agents)].name,
                                                                     audience=AUDIENCE))
                     for i in range(warm + n)]
        secret_requests = oauth._token_requests(fixture)
        ping = {"requests": [oauth._ping(fixture)], "expect": "ok "}
        processes.check()
        server = processes.server = oauth.Server()
        server.start()
        processes.check()
        server.wait_ready(fixture.host)
        expect = '"access_token"'
        results = oauth._load(processes, fixture, [
            {"name": "warm_ping", "n": warm, **ping},
            {"name": "warm_secret", "n": warm, "requests": secret_requests, "expect": expect},
            {"name": "warm_federated", "n": warm, "requests": federated[:warm], "expect": expect},
            {"name": "ping", "n": n, **ping},
            {"name": "token_issue", "n": n, "requests": secret_requests, "expect": expect},
            {"name": "token_issue_federated", "n": n, "requests": federated[warm:], "expect": expect}])
    finally:
        if server is not None:
            server.stop()
        try:
            FederatedCredential.objects.filter(agent__workspace__slug=tag).delete()
            oauth._delete(tag, fixture)
        finally:
            issuer.stop()
            connection.close()
    return results["token_issue_federated"], results["token_issue"], results["ping"], (issuer.fetches, fixture)


@scenario("token_issue_federated")
def token_issue_federated(n):
    """n client-credentials tokens authenticated by federated credentials (a fresh service-account token each, the
    issuer's JWKS cached) vs. n tokens authenticated by client secrets, same server, same run."""
    os.environ["OAUTH_ALLOW_LOOPBACK_HTTP"] = "1"  # the server process fetches the local issuer over plain http
    if connection.vendor == "sqlite":  # as token_issue: the command's (empty) transaction holds SQLite's write lock
        oauth._database_url()
        if connection.in_atomic_block:
            connection.close()
    processes = oauth.Processes()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth-federated-bench")
    try:
        federated, secret, ping, (fetches, fixture) = pool.submit(_run, n, processes).result()
    except BaseException:
        processes.abort()
        raise
    finally:
        pool.shutdown(wait=True)
    ratio = federated["rps"] / secret["rps"] if secret["rps"] else None
    extra = {
        "tokens_per_second": round(federated["rps"], 1), "secret_tokens_per_second": round(secret["rps"], 1),
        "tokens_per_second_vs_secret": round(ratio, 2) if ratio is not None else None,
        "target_tokens_per_second_vs_secret": TARGET_VS_SECRET,
        "p50_ms": round(federated["p50_ms"], 2), "p99_ms": round(federated["p99_ms"], 2),
        "secret_p50_ms": round(secret["p50_ms"], 2), "secret_p99_ms": round(secret["p99_ms"], 2),
        "errors": federated["errors"] + secret["errors"],
        "error_kinds": {**secret["error_kinds"], **federated["error_kinds"]},
        "server_cpu_ms_per_request": round(federated["server_cpu_ms_per_request"], 2),
        "secret_server_cpu_ms_per_request": round(secret["server_cpu_ms_per_request"], 2),
        "postgres_cpu_ms_per_request": round(federated["postgres_cpu_ms_per_request"], 2),
        "machine_busy_cpus": round(federated["machine_busy_cpus"], 2), "machine_cpus": os.cpu_count(),
        "issuer_fetches": fetches, "server": oauth._describe_server(),
        "loadgen": f"separate process, asyncio, {oauth.CONNECTIONS} HTTP/1.1 keep-alive connections",
        "policies_in_force": fixture.policies_in_force if fixture else None, "agents": oauth.AGENTS,
    }
    print(json.dumps({"scenario": "token_issue_federated", **extra}), file=sys.stderr)
    measured = oauth.Measured(federated["seconds"], 0, extra)
    return measured, "token_issue_client_secret_same_server", (secret["seconds"], 0)


token_issue_federated.default_n = 2000
token_issue_federated.serves_http = True
