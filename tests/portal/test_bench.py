"""`manage.py bench` prints one JSON object per scenario with the DESIGN §6 keys, and rolls back its rows."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from portal.models import AuditEvent, User

KEYS = {"scenario", "n", "seconds", "queries", "baseline", "baseline_seconds", "ratio"}


@pytest.mark.django_db
def test_bench_prints_json_lines_and_leaves_no_rows(world, settings):
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    events, users = AuditEvent.objects.count(), User.objects.count()
    out = StringIO()
    call_command("bench", "--n", "50", stdout=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["scenario"] for r in lines] == ["audit_append", "audit_verify", "audit_export", "audit_page",
                                              "members_page"]
    for result in lines:
        assert KEYS <= set(result) and result["n"] == 50 and result["seconds"] > 0
        assert result["ratio"] == pytest.approx(result["seconds"] / result["baseline_seconds"], rel=0.2, abs=0.2)
    assert (AuditEvent.objects.count(), User.objects.count()) == (events, users)
