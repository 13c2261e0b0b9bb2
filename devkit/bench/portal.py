"""Benchmark scenarios for ``manage.py bench`` and the helpers they share.

Each app registers its scenarios here (the registry imports flow downward). A scenario is a function of ``n``
returning ``(measured, baseline_name, baseline)`` where ``measured`` and ``baseline`` are ``(seconds, queries)``
pairs; every scenario runs inside a transaction that the command rolls back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from portal import audit, audit_log, workspaces
from portal.models import AuditEvent, AuditLeaf, User, WorkspaceMembership

Measured = tuple[float, int]
SCENARIOS: dict[str, Callable[[int], tuple[Measured, str, Measured]]] = {}


def scenario(name: str):
    def decorator(func):
        SCENARIOS[name] = func
        return func

    return decorator


def timed(work: Callable[[], object]) -> Measured:
    with CaptureQueriesContext(connection) as ctx:
        started = time.perf_counter()
        work()
        seconds = time.perf_counter() - started
    return seconds, len(ctx.captured_queries)


class Browser:
    """An in-process client that looks like a signed-in browser on HTTPS (production settings redirect HTTP)."""

    def __init__(self, user: User):
        self.client = Client(HTTP_HOST="localhost")
        self.client.force_login(user)

    def get(self, url: str):
        response = self.client.get(url, secure=True)
        if response.status_code != 200:
            raise ImproperlyConfigured(f"{url} answered {response.status_code}")
        return response


def global_admin() -> User:
    ga = User.objects.filter(role_assignments__role__key="global-administrator", is_active=True).first()
    if ga is None:
        raise ImproperlyConfigured("bench needs a Global Administrator: run manage.py seed_demo first.")
    return ga


def _changes(n: int) -> list[audit.Change]:
    return [audit.Change(action="bench.row", target_label=f"row {i}", after={"i": i}) for i in range(n)]


def _plain_events(n: int) -> list[AuditEvent]:
    from django.utils import timezone

    now = timezone.now()
    return [AuditEvent(created_at=now, actor_name="bench", actor_kind="system", action="bench.floor",
                       target_label=f"row {i}", after={"i": i})
            for i in range(n)]


@scenario("audit_append")
def audit_append(n):
    """Appending n events through ``record_many`` vs. a plain bulk insert of the same rows (the floor)."""
    baseline = timed(lambda: AuditEvent.objects.bulk_create(_plain_events(n), batch_size=2000))
    measured = timed(lambda: audit.record_many(actor=None, changes=_changes(n)))
    return measured, "bulk_insert_same_rows", baseline


@scenario("audit_verify")
def audit_verify(n):
    """Verifying the audit log (the Merkle tree recomputed from n events, every signed tree head checked) vs. only
    reading the same rows. The events are sequenced first, untimed (``audit_sequence`` measures that)."""
    for start in range(0, n, 50_000):
        audit.record_many(actor=None, changes=_changes(min(50_000, n - start)))
    audit_log.sequence(batch_size=50_000)
    columns = ("leaf_index", "leaf_hash", *(f"event__{name}" for name in audit_log.LEAF_COLUMNS))
    baseline = timed(lambda: sum(1 for _ in AuditLeaf.objects.order_by("leaf_index")
                                 .values_list(*columns).iterator(chunk_size=5000)))
    measured = timed(audit_log.verify_log)
    return measured, "read_same_rows", baseline


@scenario("audit_export")
def audit_export(n):
    """Streaming the CSV export of n events vs. reading the same rows."""
    audit.record_many(actor=None, changes=_changes(n))
    browser = Browser(global_admin())
    baseline = timed(lambda: sum(1 for _ in audit.export_rows(AuditEvent.objects.all())))
    measured = timed(lambda: sum(len(c) for c in browser.get("/audit/export/?format=csv").streaming_content))
    return measured, "read_same_rows", baseline


@scenario("audit_page")
def audit_page(n):
    """The /audit/ page at 10 events vs. at n events (pagination keeps it flat)."""
    browser = Browser(global_admin())
    audit.record_many(actor=None, changes=_changes(10))
    browser.get("/audit/")
    baseline = timed(lambda: browser.get("/audit/"))
    audit.record_many(actor=None, changes=_changes(n))
    measured = timed(lambda: browser.get("/audit/"))
    return measured, "same_page_at_n_10", baseline


@scenario("members_page")
def members_page(n):
    """A workspace's members page at 10 members vs. at n members."""
    owners = [User.objects.create(username=f"bench-owner-{i}") for i in range(2)]
    workspace = workspaces.workspace_create(actor=None, name="Bench", slug="bench-members", owners=owners)
    people = User.objects.bulk_create(User(username=f"bench-{i}") for i in range(n))
    WorkspaceMembership.objects.bulk_create(
        WorkspaceMembership(workspace=workspace, user=p, role="contributor") for p in people[:8])
    browser = Browser(owners[0])
    url = f"/workspaces/{workspace.slug}/members/"
    browser.get(url)
    baseline = timed(lambda: browser.get(url))
    WorkspaceMembership.objects.bulk_create(
        (WorkspaceMembership(workspace=workspace, user=p, role="contributor") for p in people[8:]), batch_size=2000)
    measured = timed(lambda: browser.get(url))
    return measured, "same_page_at_n_10", baseline
