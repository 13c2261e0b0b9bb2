"""Measure the portal's hot paths: one JSON object per line and scenario.

Scenarios live in ``devkit.bench`` and load only when this command runs. Every scenario runs inside a
transaction that is rolled back, so benchmarking leaves the database as it was. ``baseline`` names a reference
measured in the same run (the physical floor of the same work, or the same page at a small n);
``ratio = seconds / baseline_seconds``.
"""

from __future__ import annotations

import json

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from devkit import bench
from governance.signing import keys as signing_keys


class _Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Benchmark hot paths; prints one JSON line per scenario."

    def add_arguments(self, parser):
        parser.add_argument("--scenario", choices=sorted(bench.load()), help="One scenario (default: all).")
        parser.add_argument("--n", type=int, default=None,
                            help="Rows per scenario (default: each scenario's own, usually 10,000).")

    def handle(self, *args, scenario: str | None, n: int | None, **options):
        if n is not None and n < 10:
            raise CommandError("--n must be at least 10.")
        scenarios = bench.load()
        for name in [scenario] if scenario else list(scenarios):
            func = scenarios[name]
            size = n or getattr(func, "default_n", 10_000)
            try:
                with transaction.atomic():
                    measured, baseline_name, baseline = func(size)
                    raise _Rollback
            except _Rollback:
                # a signing key the scenario made went with its transaction: this process must not keep it
                signing_keys.forget()
            except ImproperlyConfigured as error:
                raise CommandError(str(error)) from error
            seconds, queries = measured
            self.stdout.write(json.dumps({
                "scenario": name, "n": size, "seconds": round(seconds, 4), "queries": queries,
                "baseline": baseline_name, "baseline_seconds": round(baseline[0], 4),
                "baseline_queries": baseline[1],
                "ratio": round(seconds / baseline[0], 2) if baseline[0] else None, "database": connection.vendor,
                **getattr(measured, "extra", {}),  # e.g. requests/s and latency percentiles of HTTP scenarios
            }))
