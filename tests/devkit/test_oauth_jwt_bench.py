"""``manage.py bench --scenario jwks_verify``: outside libraries verify the portal's JWTs against the JWKS."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_r25_jwks_verify_reports_each_library_against_the_ecdsa_floor():
    out = StringIO()
    call_command("bench", "--scenario", "jwks_verify", "--n", "20", stdout=out)
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["scenario"] == "jwks_verify" and line["n"] == 20
    assert line["baseline"] == "ecdsa_p256_verify_same_tokens" and line["keys_published"] >= 1
    assert line["pyjwt_tokens_per_cpu_second"] > 0 and line["joserfc_tokens_per_cpu_second"] > 0
    assert line["ratio"] == pytest.approx(line["seconds"] / line["baseline_seconds"], rel=0.05, abs=0.02)
