"""``policy_replay`` at a small n (docs/policy-replay.md, "At volume"): one JSON line with the fields of every
scenario, the replay timed against a count of the same rows, and nothing left behind."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from governance.conditional_access.models import ConditionalAccessPolicy
from governance.signin.models import SignIn
from tests.devkit.test_signin_bench import demo_blueprint  # noqa: F401  (fixture)


@pytest.mark.django_db
def test_r29_replay_bench_scenario_prints_its_line_and_rolls_back(demo_blueprint):  # noqa: F811
    out = StringIO()
    call_command("bench", "--scenario", "policy_replay", "--n", "2000", stdout=out)
    result = json.loads(out.getvalue())
    assert {"scenario", "n", "seconds", "queries", "baseline", "baseline_seconds", "ratio"} <= set(result)
    assert result["scenario"] == "policy_replay" and result["n"] == 2000
    assert result["baseline"] == "count_of_the_same_rows" and result["seconds"] > 0
    assert result["sign_ins_replayed"] == 2000 - 2000 // 50 and 0 < result["blocked_sign_ins"] < 2000
    assert result["groups_evaluated"] < 2000  # grouped in SQL, not row by row
    assert SignIn.objects.count() == 0 and not ConditionalAccessPolicy.objects.exists()
