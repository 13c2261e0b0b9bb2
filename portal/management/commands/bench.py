"""Measure the portal's hot paths (DESIGN §6): one JSON object per line and scenario.

Every scenario runs inside a transaction that is rolled back, so benchmarking leaves the database as it was.
``baseline`` names a reference measured in the same run: the physical floor of the same work (a plain bulk
insert or read of the same rows) or the same page at a small n; ``ratio = seconds / baseline_seconds``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal import audit, workspaces
from portal.models import AuditEvent, User, WorkspaceMembership


class _Rollback(Exception):
    pass


class _Browser:
    """An in-process client that looks like a signed-in browser on HTTPS (production settings redirect HTTP)."""

    def __init__(self, user: User):
        self.client = Client(HTTP_HOST="localhost")
        self.client.force_login(user)

    def get(self, url: str):
        response = self.client.get(url, secure=True)
        if response.status_code != 200:
            raise CommandError(f"{url} answered {response.status_code}")
        return response


def _timed(work: Callable[[], object]) -> tuple[float, int]:
    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
    return seconds, len(ctx.captured_queries)


def _changes(n: int) -> list[audit.Change]:
    return [audit.Change(action="bench.row", target_label=f"row {i}", after={"i": i}) for i in range(n)]


def _plain_events(n: int) -> list[AuditEvent]:
    from django.utils import timezone

    now = timezone.now()
    return [AuditEvent(created_at=now, actor_name="bench", actor_kind="system", action="bench.floor",
                       target_label=f"row {i}", after={"i": i}, prev_hash="0", hash=f"floor-{i}")
            for i in range(n)]


class Command(BaseCommand):
    help = "Benchmark audit appends, verification, export and list pages; prints JSON lines."

    SCENARIOS = ("audit_append", "audit_verify", "audit_export", "audit_page", "members_page")

    def add_arguments(self, parser):
        parser.add_argument("--scenario", choices=self.SCENARIOS, help="One scenario (default: all).")
        parser.add_argument("--n", type=int, default=10_000, help="Rows per scenario (default 10,000).")

    def handle(self, *args, scenario: str | None, n: int, **options):
        if n < 10:
            raise CommandError("--n must be at least 10.")
        for name in [scenario] if scenario else self.SCENARIOS:
            try:
                with transaction.atomic():
                    result = getattr(self, f"bench_{name}")(n)
                    raise _Rollback
            except _Rollback:
                pass
            self.stdout.write(json.dumps(result))

    def _result(self, name, n, measured, baseline_name, baseline):
        seconds, queries = measured
        baseline_seconds = baseline[0]
        return {"scenario": name, "n": n, "seconds": round(seconds, 4), "queries": queries,
                "baseline": baseline_name, "baseline_seconds": round(baseline_seconds, 4),
                "ratio": round(seconds / baseline_seconds, 2) if baseline_seconds else None,
                "database": connection.vendor}

    def bench_audit_append(self, n):
        """Hash-chained append of n events vs. a plain bulk insert of the same rows (the floor)."""
        baseline = _timed(lambda: AuditEvent.objects.bulk_create(_plain_events(n), batch_size=2000))
        measured = _timed(lambda: audit.record_many(actor=None, changes=_changes(n)))
        return self._result("audit_append", n, measured, "bulk_insert_same_rows", baseline)

    def bench_audit_verify(self, n):
        """Verifying the chain vs. only reading the same columns."""
        audit.record_many(actor=None, changes=_changes(n))
        columns = ("id", "hash", *audit.HASHED_FIELDS)
        baseline = _timed(lambda: sum(1 for _ in AuditEvent.objects.order_by("id").values_list(*columns)
                                      .iterator(chunk_size=5000)))
        measured = _timed(audit.verify_chain)
        return self._result("audit_verify", n, measured, "read_same_rows", baseline)

    def bench_audit_export(self, n):
        """Streaming the CSV export of n events vs. reading the same rows."""
        audit.record_many(actor=None, changes=_changes(n))
        client = self._client_for_admin()
        baseline = _timed(lambda: sum(1 for _ in audit.export_rows(AuditEvent.objects.all())))
        measured = _timed(lambda: sum(len(c) for c in client.get("/audit/export/?format=csv").streaming_content))
        return self._result("audit_export", n, measured, "read_same_rows", baseline)

    def bench_audit_page(self, n):
        """The /audit/ page at 10 events vs. at n events (pagination keeps it flat)."""
        client = self._client_for_admin()
        audit.record_many(actor=None, changes=_changes(10))
        client.get("/audit/")
        baseline = _timed(lambda: client.get("/audit/"))
        audit.record_many(actor=None, changes=_changes(n))
        measured = _timed(lambda: client.get("/audit/"))
        return self._result("audit_page", n, measured, "same_page_at_n_10", baseline)

    def bench_members_page(self, n):
        """A workspace's members page at 10 members vs. at n members."""
        owners = [User.objects.create(username=f"bench-owner-{i}") for i in range(2)]
        workspace = workspaces.workspace_create(actor=None, name="Bench", slug="bench-members", owners=owners)
        people = User.objects.bulk_create(User(username=f"bench-{i}") for i in range(n))
        WorkspaceMembership.objects.bulk_create(
            WorkspaceMembership(workspace=workspace, user=p, role="contributor") for p in people[:8])
        client = _Browser(owners[0])
        url = f"/workspaces/{workspace.slug}/members/"
        client.get(url)
        baseline = _timed(lambda: client.get(url))
        WorkspaceMembership.objects.bulk_create(
            (WorkspaceMembership(workspace=workspace, user=p, role="contributor") for p in people[8:]),
            batch_size=2000)
        measured = _timed(lambda: client.get(url))
        return self._result("members_page", n, measured, "same_page_at_n_10", baseline)

    def _client_for_admin(self) -> _Browser:
        ga = User.objects.filter(role_assignments__role__key="global-administrator", is_active=True).first()
        if ga is None:
            raise CommandError("bench needs a Global Administrator: run manage.py seed_demo first.")
        return _Browser(ga)

