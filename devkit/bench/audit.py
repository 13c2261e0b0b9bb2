"""Audit log benchmarks (docs/design.md, R23), registered with ``devkit.bench``.

- ``audit_sequence``: the sequencer integrating n committed events (default 100,000) vs. reading the same rows.
- ``audit_contention``: one process provisions 10,000 agents from a bulk file in one transaction while another makes
  100 audited changes (``directory.user_update``, one transaction each); figures: the changes' p50/p99/max latency
  and the bulk's duration, beside the same 100 changes and the same bulk each run alone (the baseline).
- ``audit_concurrency``: 4 processes × n/4 audited changes vs. one process making n/4 (default n = 4,000);
  ``throughput_ratio`` = changes per second with four processes ÷ with one.

The last two need processes that see committed data, so they run on a scratch PostgreSQL database copied from a
template (``<database>_audit_tpl_<schema>``: migrated and seeded with the demo once, reused while the migrations
are the same) and dropped at the end; the command's own transaction is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from devkit.bench.portal import _changes, scenario, timed
from portal import audit, audit_log
from portal.models import AuditEvent

CONTENTION_AGENTS = 10_000
CONTENTION_CHANGES = 100
CONCURRENCY_PROCESSES = 4
README_BULK_SECONDS = 7.7  # the README's bulk_provision figure for 10,000 agents


class Measured(tuple):
    """``(seconds, queries)`` as ``manage.py bench`` unpacks it, with the scenario's figures in ``extra``."""

    def __new__(cls, seconds: float, queries: int, extra: dict):
        measured = super().__new__(cls, (seconds, queries))
        measured.extra = extra
        return measured


@scenario("audit_sequence")
def audit_sequence(n):
    """Integrating n committed events into the Merkle tree (batches, a signed head each) vs. reading the rows."""
    audit_log.sequence()  # whatever the database had pending, untimed
    for start in range(0, n, 50_000):
        audit.record_many(actor=None, changes=_changes(min(50_000, n - start)))
    baseline = timed(lambda: sum(1 for _ in AuditEvent.objects.filter(leaf__isnull=True).order_by("id")
                                 .values_list(*audit_log.LEAF_COLUMNS).iterator(chunk_size=10_000)))
    result: list[audit_log.SequenceResult] = []
    measured = timed(lambda: result.append(audit_log.sequence()))
    if result[0].integrated != n:
        raise AssertionError(f"audit_sequence integrated {result[0].integrated} events, expected {n}")
    return Measured(*measured, {"batches": result[0].batches, "events_per_second": round(n / measured[0])}), \
        "read_same_rows", baseline


audit_sequence.default_n = 100_000


# --- scratch databases for the multi-process scenarios -----------------------------------------------------------


def _pg_admin():
    import psycopg

    s = connection.settings_dict
    return psycopg.connect(dbname="postgres", user=s.get("USER") or None, password=s.get("PASSWORD") or None,
                           host=s.get("HOST") or None, port=s.get("PORT") or None, autocommit=True)


def _url(name: str) -> str:
    s = connection.settings_dict
    auth = quote(s.get("USER") or "", safe="") + (":" + quote(s["PASSWORD"], safe="") if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{quote(name, safe='')}"


def _env(url: str) -> dict:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    return {**env, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "portal.settings"}


def _manage(url: str, *args: str) -> None:
    done = subprocess.run([sys.executable, "manage.py", *args], env=_env(url), cwd=settings.BASE_DIR,
                          capture_output=True, text=True, timeout=900, check=False)
    if done.returncode != 0:
        raise ImproperlyConfigured(f"manage.py {' '.join(args)} failed on the scratch database: {done.stderr[-2000:]}")


def _template() -> str:
    """A migrated, seeded database to copy from; made once per set of migrations."""
    leaves = sorted(f"{app}.{name}" for app, name in MigrationLoader(None, ignore_no_migrations=True).graph
                    .leaf_nodes())
    digest = hashlib.sha256(" ".join(leaves).encode()).hexdigest()[:10]
    name = f"{connection.settings_dict['NAME']}_audit_tpl_{digest}"[:63]
    with _pg_admin() as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return name
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        _manage(_url(name), "migrate", "--noinput", "-v0")
        _manage(_url(name), "seed_demo")
        _manage(_url(name), "run_governance_jobs", "--job", "sequence_audit_log")
    except Exception:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        raise
    return name


class Scratch:
    """A copy of the template, dropped on exit."""

    def __enter__(self) -> str:
        if connection.vendor != "postgresql":
            raise ImproperlyConfigured("audit_contention and audit_concurrency measure PostgreSQL: set DATABASE_URL.")
        template = _template()
        self.name = f"{connection.settings_dict['NAME']}_audit_run"[:63]
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.name}" TEMPLATE "{template}"')
        return _url(self.name)

    def __exit__(self, *exc) -> None:
        with _pg_admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


WORKER = "import django; django.setup(); from devkit.bench.audit import worker_main; worker_main()"


def _start(url: str, spec: dict) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", WORKER], env=_env(url), cwd=settings.BASE_DIR, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(json.dumps(spec))
    process.stdin.close()
    process.stdin = None  # communicate() must not flush it again
    return process


def _finish(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise ImproperlyConfigured(f"an audit bench worker failed ({process.returncode}): {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _wait_for_line(process: subprocess.Popen, expected: str) -> None:
    line = process.stdout.readline().strip()
    if line != expected:
        process.kill()
        raise ImproperlyConfigured(f"an audit bench worker said {line!r}: {process.stderr.read()[-2000:]}")


def worker_main() -> None:
    """One bench process: ``bulk`` (provision agents in one transaction) or ``changes`` (audited changes, one
    transaction each). Prints ``ready`` once set up, waits for ``start_at``, then prints its figures as JSON."""
    import io

    from agents import bulk
    from devkit.bench.agents import _blueprint, _bulk_csv
    from portal import directory
    from portal.models import User, Workspace

    spec = json.loads(sys.stdin.read())
    ga = User.objects.get(username="ga")
    if spec["role"] == "bulk":
        workspace = Workspace.objects.get(slug="soc")
        owners = [User.objects.get(username="owner"), User.objects.get(username="owner2")]
        text = _bulk_csv(_blueprint(), owners, spec["n"]).replace(",bulk-", f",{spec['tag']}-")
        print("ready", flush=True)
        started = time.perf_counter()
        bulk.provision_file(actor=None, workspace=workspace, stream=io.StringIO(text), filename="bench.csv")
        print(json.dumps({"seconds": time.perf_counter() - started}), flush=True)
        return
    target = User.objects.filter(username=f"audit-bench-{spec['tag']}").first() or User.objects.create_user(
        username=f"audit-bench-{spec['tag']}", password=None, display_name="Audit bench")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    print("ready", flush=True)
    time.sleep(max(0.0, spec.get("start_at", 0) - time.time()))
    latencies = []
    cpu_before = (time.process_time(), _process_cpu_seconds(backend))
    began = time.perf_counter()
    for i in range(spec["n"]):
        started = time.perf_counter()
        directory.user_update(actor=ga, user=target, display_name=f"Audit bench {i}", email="", manager=None)
        latencies.append(time.perf_counter() - started)
    seconds = time.perf_counter() - began
    client_cpu, backend_cpu = time.process_time() - cpu_before[0], _process_cpu_seconds(backend) - cpu_before[1]
    print(json.dumps({"seconds": seconds, "ended_at": time.time(), "latencies": latencies,
                      "client_cpu_seconds": client_cpu, "backend_cpu_seconds": backend_cpu}), flush=True)


def _process_cpu_seconds(pid: int) -> float:
    """CPU seconds a process on this machine has used (Linux ``/proc``; the database runs here in the bench)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def _latency_figures(latencies: list[float]) -> dict:
    return {"p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * _percentile(latencies, 0.99), 1), "max_ms": round(1000 * max(latencies), 1)}


@scenario("audit_contention")
def audit_contention(n):
    """n audited changes while a 10,000-agent bulk provisioning runs in one transaction, vs. the same changes alone.
    ``seconds`` is the changes' p99 latency; the bulk's own time is reported beside the README's figure."""
    with Scratch() as url:
        alone = _start(url, {"role": "changes", "n": n, "tag": "alone"})
        _wait_for_line(alone, "ready")
        alone_figures = _finish(alone)
        bulk_alone = _start(url, {"role": "bulk", "n": CONTENTION_AGENTS, "tag": "solo"})
        _wait_for_line(bulk_alone, "ready")
        bulk_alone_seconds = _finish(bulk_alone)["seconds"]

        bulk = _start(url, {"role": "bulk", "n": CONTENTION_AGENTS, "tag": "busy"})
        _wait_for_line(bulk, "ready")  # the bulk's transaction starts now
        # the changes start 3 s into the bulk (or as soon as their process is up, if that takes longer)
        changes = _start(url, {"role": "changes", "n": n, "tag": "busy", "start_at": time.time() + 3.0})
        _wait_for_line(changes, "ready")
        changes_figures = _finish(changes)
        bulk_seconds = _finish(bulk)["seconds"]
    during, before = _latency_figures(changes_figures["latencies"]), _latency_figures(alone_figures["latencies"])
    extra = {**during, "changes_alone": before, "bulk_seconds": round(bulk_seconds, 2),
             "bulk_alone_seconds": round(bulk_alone_seconds, 2), "bulk_readme_seconds": README_BULK_SECONDS,
             "bulk_agents": CONTENTION_AGENTS, "changes_overlapped_bulk": changes_figures["seconds"] < bulk_seconds}
    print(json.dumps({"scenario": "audit_contention", **extra}), file=sys.stderr)
    return Measured(during["p99_ms"] / 1000, 0, extra), "same_changes_alone_p99", (before["p99_ms"] / 1000, 0)


audit_contention.default_n = CONTENTION_CHANGES
audit_contention.own_database = True


@scenario("audit_concurrency")
def audit_concurrency(n):
    """n audited changes by 4 processes at once vs. n/4 by one process; ``throughput_ratio`` = (changes per
    second with four) ÷ (changes per second with one)."""
    each = max(1, n // CONCURRENCY_PROCESSES)
    with Scratch() as url:
        single = _start(url, {"role": "changes", "n": each, "tag": "single"})
        _wait_for_line(single, "ready")
        one = _finish(single)
        start_at = time.time() + 20.0  # every process is set up by then, and all start together
        workers = [_start(url, {"role": "changes", "n": each, "tag": f"w{i}", "start_at": start_at})
                   for i in range(CONCURRENCY_PROCESSES)]
        for worker in workers:
            _wait_for_line(worker, "ready")
        if time.time() > start_at:
            raise ImproperlyConfigured("the audit_concurrency processes took over 20 s to start; the machine is "
                                       "too busy to measure")
        results = [_finish(worker) for worker in workers]
        wall = max(result["ended_at"] for result in results) - start_at
    single_rate = each / one["seconds"]
    many_rate = each * CONCURRENCY_PROCESSES / wall
    latencies = [value for result in results for value in result["latencies"]]
    # One process keeps its client and its database backend busy in turn: their CPU over its wall time is how many
    # CPUs one process uses, so no number of processes can beat (CPUs on the machine ÷ that) times its rate.
    one_busy = (one["client_cpu_seconds"] + one["backend_cpu_seconds"]) / one["seconds"]
    cpus = os.cpu_count() or 1
    extra = {"processes": CONCURRENCY_PROCESSES, "changes_per_process": each,
             "one_process_per_second": round(single_rate, 1), "four_processes_per_second": round(many_rate, 1),
             "throughput_ratio": round(many_rate / single_rate, 2), **_latency_figures(latencies),
             "one_process_busy_cpus": round(one_busy, 2), "machine_cpus": cpus,
             "cpu_bound_ceiling_ratio": round(min(CONCURRENCY_PROCESSES, cpus) / one_busy, 2) if one_busy else None,
             "cpu_ms_per_change": {
                 "one_process": round(1000 * (one["client_cpu_seconds"] + one["backend_cpu_seconds"]) / each, 2),
                 "four_processes": round(1000 * sum(r["client_cpu_seconds"] + r["backend_cpu_seconds"]
                                                    for r in results) / (each * CONCURRENCY_PROCESSES), 2)}}
    print(json.dumps({"scenario": "audit_concurrency", **extra}), file=sys.stderr)
    return Measured(wall, 0, extra), "one_process_quarter_of_the_changes", (one["seconds"], 0)


audit_concurrency.default_n = 4000
audit_concurrency.own_database = True
