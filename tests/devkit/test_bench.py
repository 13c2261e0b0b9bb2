"""`manage.py bench` prints one JSON object per scenario with the documented keys, and rolls back its rows."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from agents.models import Agent
from portal.models import AuditEvent, User

KEYS = {"scenario", "n", "seconds", "queries", "baseline", "baseline_seconds", "ratio"}


@pytest.mark.django_db
def test_bench_prints_json_lines_and_leaves_no_rows(world, settings):
    from agents import catalog, manifests
    from devkit.demo.agents import MANIFESTS

    catalog.load_skills()
    manifests.blueprint_import(actor=None, data=(MANIFESTS / "DLPIncidentResponseAgent.yaml").read_bytes(),
                               filename="DLPIncidentResponseAgent.yaml")
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    events, users, agents = AuditEvent.objects.count(), User.objects.count(), Agent.objects.count()
    out = StringIO()
    from devkit import bench

    for name in [n for n, f in bench.load().items()
                 if not getattr(f, "serves_http", False) and not getattr(f, "own_database", False)]:
        # the HTTP scenarios serve a real server process, which cannot see this test's database: their own test
        # (tests/devkit/test_oauth_bench.py) runs them against a migrated file database; the multi-process audit
        # scenarios run processes on a database copied for them (README, Benchmarks)
        call_command("bench", "--scenario", name, "--n", "150", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["scenario"] for r in lines] == ["audit_append", "audit_verify", "audit_export", "audit_page",
                                              "members_page", "registry_list", "bulk_provision", "audit_sequence",
                                              "expire_assignments",
                                              "review_open", "review_apply", "hygiene_run", "jwks_verify",
                                              "signin_scale", "signin_retention", "policy_replay", "usage_rollup"]
    for result in lines:
        assert KEYS <= set(result) and result["n"] == 150 and result["seconds"] > 0
        assert result["ratio"] == pytest.approx(result["seconds"] / result["baseline_seconds"], rel=0.2, abs=0.2)
    assert (AuditEvent.objects.count(), User.objects.count(), Agent.objects.count()) == (events, users, agents)
