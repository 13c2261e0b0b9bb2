"""The sign-in log's benchmarks at a small n (docs/design.md, "The sign-in log at volume"): ``signin_scale`` prints
each page's time against the same page at a tenth of the rows, ``signin_retention`` drops a month of day
partitions, and both leave no row behind."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from agents.models import Agent
from governance.signin import partitions
from governance.signin.models import SignIn


@pytest.fixture
def demo_blueprint(world, settings):
    from agents import catalog, manifests
    from devkit.demo.agents import MANIFESTS

    catalog.load_skills()
    manifests.blueprint_import(actor=None, data=(MANIFESTS / "DLPIncidentResponseAgent.yaml").read_bytes(),
                               filename="DLPIncidentResponseAgent.yaml")
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}


def _run(scenario: str, n: int) -> dict:
    out = StringIO()
    call_command("bench", "--scenario", scenario, "--n", str(n), stdout=out)
    return json.loads(out.getvalue())


@pytest.mark.django_db
def test_signin_scale_times_every_page_against_its_baseline(demo_blueprint, postgres):
    agents, days = Agent.objects.count(), set(partitions.partition_days())
    result = _run("signin_scale", 3000)
    assert result["baseline"] == "same_pages_at_300_rows"
    pages = result["pages"]
    assert {(p["page"].split("?")[0].rstrip("/").split("/")[-1] if "agent-facts" not in p["page"] else "facts",
             p["as"]) for p in pages} >= {("sign-ins", "ga"), ("sign-ins", "owner"), ("facts", "ga")}
    assert len(pages) == 10
    for page in pages:
        assert set(page) == {"page", "as", "ms", "baseline_ms", "ratio"} and page["ms"] > 0 and page["baseline_ms"] > 0
    assert SignIn.objects.count() == 0 and Agent.objects.count() == agents  # rolled back
    assert set(partitions.partition_days()) == days


@pytest.mark.django_db
def test_signin_retention_drops_a_month_of_partitions(demo_blueprint, postgres):
    result = _run("signin_retention", 3000)
    assert result["rows_dropped"] == 3000 and result["partitions_dropped"] >= 29
    assert SignIn.objects.count() == 0
