"""``manage.py bench --scenario jwks_verify|code_exchange``: outside libraries verify the portal's JWTs against the
JWKS; authorization codes are exchanged over HTTP."""

from __future__ import annotations

import json
import os
import sqlite3
from io import StringIO

import pytest
from django.core.management import call_command

from tests.devkit.test_oauth_bench import BLUEPRINT, _json_lines, _manage


@pytest.mark.django_db
def test_r25_jwks_verify_reports_each_library_against_the_ecdsa_floor():
    out = StringIO()
    call_command("bench", "--scenario", "jwks_verify", "--n", "20", stdout=out)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["scenario"] == "jwks_verify" and line["n"] == 20
    assert line["baseline"] == "ecdsa_p256_verify_same_tokens" and line["keys_published"] >= 1
    assert line["pyjwt_tokens_per_cpu_second"] > 0 and line["joserfc_tokens_per_cpu_second"] > 0
    assert line["ratio"] == pytest.approx(line["seconds"] / line["baseline_seconds"], rel=0.05, abs=0.02)


def test_r27_code_exchange_exchanges_every_code_over_http_and_leaves_no_rows(tmp_path):
    """Codes made for a consenting person, exchanged with PKCE by the load generator against a gunicorn server (a
    throwaway SQLite database, as in test_oauth_bench.py): no errors, and nothing of the run is left."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    env.update(PORTAL_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="portal.settings")
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "shell", "-v0", "-c", BLUEPRINT)
    done = _manage(env, "bench", "--scenario", "code_exchange", "--n", "50")
    [line] = _json_lines(done.stdout)
    assert line["scenario"] == "code_exchange" and line["n"] == 50 and line["errors"] == 0, line["error_kinds"]
    assert line["exchanges_per_second"] > 0 and 0 < line["p50_ms"] <= line["p99_ms"]
    assert line["queries_per_request"] > 0 and line["baseline"] == "trivial_authenticated_view_same_server"
    database = sqlite3.connect(tmp_path / "portal.sqlite3")
    try:
        left = {table: database.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for table in ("oauth_oauthclient", "oauth_authorizationcode", "oauth_consent", "oauth_refreshtoken",
                              "signin_accesstoken", "signin_signin", "agents_agent")}
    finally:
        database.close()
    assert left == dict.fromkeys(left, 0)
