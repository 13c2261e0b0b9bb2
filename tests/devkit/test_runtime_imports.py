"""Benchmarks and demo data are development tools: no web or worker process loads them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, sys
kind = sys.argv[1]
if kind == "web":
    from portal.wsgi import application
    from django.urls import get_resolver
    get_resolver().url_patterns  # every URLconf and view module, as the first request would load them
elif kind == "worker":
    from portal.celery import app
    app.loader.import_default_modules()  # what `celery worker` and `celery beat` load: settings, apps, tasks
    app.tasks.keys()
print(json.dumps(sorted(sys.modules)))
"""

DEV_ONLY = ("devkit.bench", "devkit.demo", "devkit.management", "devkit.federation_issuer")


@pytest.mark.parametrize("kind", ["web", "worker"])
def test_entry_points_load_no_benchmark_or_demo_module(kind):
    result = subprocess.run([sys.executable, "-c", PROBE, kind], capture_output=True, text=True, timeout=120,
                            check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert "governance.signin.oauth" in loaded and "governance.runs.services" in loaded  # the probe loaded the apps
    assert not [name for name in loaded if name.startswith(DEV_ONLY)]


def test_the_dev_commands_load_their_modules_only_when_they_run():
    from django.core.management import get_commands

    assert get_commands()["bench"] == "devkit" and get_commands()["seed_demo"] == "devkit"
