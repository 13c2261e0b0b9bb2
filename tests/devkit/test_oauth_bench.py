"""``manage.py bench --scenario token_issue|introspect``: a real gunicorn server and a separate load generator.

The server is another process, so it cannot see a test transaction (nor pytest's in-memory SQLite database): the
test runs the command as a subprocess against a throwaway SQLite database (``PORTAL_VAR_DIR``) after ``migrate``,
with the local-memory cache, and checks the JSON line, zero errors, and that the run left no rows behind.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

KEYS = {"scenario", "n", "seconds", "queries", "baseline", "baseline_seconds", "ratio"}
FIGURES = {"p50_ms", "p99_ms", "errors", "baseline_requests_per_second", "queries_per_request", "server",
           "loadgen", "rate_limits", "policies_in_force"}
N = 100
BLUEPRINT = """
from agents import catalog, manifests
from devkit.demo.agents import MANIFESTS
catalog.load_skills()
manifests.blueprint_import(actor=None, data=(MANIFESTS / "DLPIncidentResponseAgent.yaml").read_bytes(),
                           filename="DLPIncidentResponseAgent.yaml")
"""


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORTAL_VAR_DIR=str(tmp_path_factory.mktemp("oauth-bench")), DJANGO_SETTINGS_MODULE="portal.settings")
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "shell", "-v0", "-c", BLUEPRINT)
    return env


@pytest.mark.parametrize(("name", "rate"), [("token_issue", "tokens_per_second"),
                                             ("introspect", "introspections_per_second")])
def test_oauth_scenario_prints_its_line_with_no_errors_and_leaves_no_rows(bench_env, name, rate):
    done = _manage(bench_env, "bench", "--scenario", name, "--n", str(N))
    [line] = _json_lines(done.stdout)
    assert KEYS <= set(line) and line["scenario"] == name and line["n"] == N
    assert line["seconds"] > 0 and line["baseline_seconds"] > 0 and line["queries"] > 0
    if name == "token_issue":  # measured against a stock django-oauth-toolkit server in the same run
        assert line["baseline"] == "django-oauth-toolkit client credentials"
        assert line["dot_errors"] == 0 and line["dot_tokens_per_second"] > 0 and line["tokens_per_second_vs_dot"] > 0
        rounds = line["rounds"]
        assert len(line["tokens_per_second_vs_dot_rounds"]) == rounds == len(line["dot_tokens_per_second_rounds"])
    else:
        assert line["baseline"] == "trivial_authenticated_view_same_server"
    assert line["ratio"] == pytest.approx(line["seconds"] / line["baseline_seconds"], rel=0.05, abs=0.02)
    [figures] = [f for f in _json_lines(done.stderr) if f.get("scenario") == name]
    assert FIGURES | {rate} <= set(figures)
    assert figures["errors"] == 0, figures["error_kinds"]
    assert figures[rate] > 0 and 0 < figures["p50_ms"] <= figures["p99_ms"]
    assert figures["policies_in_force"] >= 10 and figures["cache"] == "LocMemCache"

    database = sqlite3.connect(Path(bench_env["PORTAL_VAR_DIR"]) / "portal.sqlite3")
    try:
        left = {table: database.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("agents_agent", "agents_credential", "signin_accesstoken", "signin_signin",
                              "conditional_access_conditionalaccesspolicy", "signin_resourceserver", "django_session")}
    finally:
        database.close()
    assert left == dict.fromkeys(left, 0)


def test_token_issue_federated_is_measured_against_secrets_in_the_same_run(bench_env):
    """docs/oauth.md, "Agents without secrets": federated credentials (a local OpenID issuer, its JWKS cached) vs.
    client secrets, same server, same run; no errors, no rows left."""
    done = _manage(bench_env, "bench", "--scenario", "token_issue_federated", "--n", str(N))
    [line] = _json_lines(done.stdout)
    assert KEYS <= set(line) and line["scenario"] == "token_issue_federated" and line["n"] == N
    assert line["baseline"] == "token_issue_client_secret_same_server"
    assert line["errors"] == 0, line["error_kinds"]
    assert line["tokens_per_second"] > 0 and line["tokens_per_second_vs_secret"] > 0
    assert line["issuer_fetches"] >= 2  # the discovery document and the JWKS, then the cache
    database = sqlite3.connect(Path(bench_env["PORTAL_VAR_DIR"]) / "portal.sqlite3")
    try:
        left = {table: database.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("agents_agent", "agents_federatedcredential", "signin_accesstoken", "signin_signin")}
    finally:
        database.close()
    assert left == dict.fromkeys(left, 0)


def test_token_issue_rounds_split_n_and_pool_their_figures():
    from devkit.bench import oauth_jwt

    assert oauth_jwt._rounds(50) == [50]
    assert oauth_jwt._rounds(6001) == [1001, 1000, 1000, 1000, 1000, 1000]
    phase = {"connections_per_worker": [4, 4], "error_kinds": {}, "loadgen_cpu_share": 0.2, "machine_busy_cpus": 2.0}
    slow = {**phase, "n": 100, "seconds": 2.0, "latencies_ms": [float(ms) for ms in range(1, 101)],
            "server_cpu_ms_per_request": 3.0, "postgres_cpu_ms_per_request": 1.0, "error_kinds": {"http_500": 1}}
    fast = {**phase, "n": 300, "seconds": 1.0, "latencies_ms": [0.5] * 300, "server_cpu_ms_per_request": 1.0,
            "postgres_cpu_ms_per_request": 1.0}
    pooled = oauth_jwt._combined([slow, fast])
    assert pooled["n"] == 400 and pooled["seconds"] == 3.0 and pooled["rps"] == pytest.approx(400 / 3)
    assert pooled["server_cpu_ms_per_request"] == pytest.approx((300 + 300) / 400)
    assert pooled["p50_ms"] == 0.5 and pooled["p99_ms"] == 97.0 and pooled["max_ms"] == 100.0
    assert pooled["errors"] == 1 and pooled["error_kinds"] == {"http_500": 1}
