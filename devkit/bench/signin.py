"""Sign-in log benchmarks at volume, registered with ``devkit.bench`` (docs/design.md, "The sign-in log at volume").

``signin_scale``: n sign-ins over 90 days for 30 agents, loaded by SQL (``generate_series``, not row by row), the
usage rollup brought up to date, then each page that touches the log timed as the Global Administrator and as a
workspace owner, against the same page with 10,000 rows measured earlier in the same run. The JSON line's
``pages`` lists ``{"page", "as", "ms", "baseline_ms", "ratio"}``; the goal is every ratio ≤ 2, every page ≤ 300 ms
and the agent facts ≤ 200 ms. ``seconds`` and ``baseline_seconds`` are the slowest page at n and at 10,000.

``signin_retention``: n sign-ins over a month that is past ``SIGNIN_RETENTION_DAYS``, then the retention job
dropping that month (30 day partitions), against the same job with nothing to drop.

Both are meant for PostgreSQL (the log is partitioned there; SQLite's plain table is loaded through the ORM, for
tests) and need the demo data (``manage.py seed_demo``).
"""

from __future__ import annotations

import time
from datetime import UTC, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from agents import registry
from agents.models import Agent, Blueprint
from devkit.bench.portal import Browser, global_admin, scenario, timed
from governance.signin import partitions
from governance.signin.models import SignIn
from governance.usage import rollup
from portal import workspaces
from portal.models import User

AGENTS = 30
BASELINE_ROWS = 10_000
DAYS = 90
LOAD_CHUNK = 1_000_000  # rows per INSERT statement


class Measured(tuple):
    """``(seconds, queries)`` as ``manage.py bench`` unpacks it, with the per-page figures in ``extra``."""

    def __new__(cls, seconds: float, queries: int, extra: dict):
        measured = super().__new__(cls, (seconds, queries))
        measured.extra = extra
        return measured


def _fleet(prefix: str):
    """A workspace with two owners and ``AGENTS`` agents made as the registry makes them (identities, client ids)."""
    blueprint = Blueprint.objects.filter(is_complete=True, publisher_kind="microsoft").order_by("name").first()
    if blueprint is None:
        raise ImproperlyConfigured("bench needs the demo blueprints: run manage.py seed_demo first.")
    owners = [User.objects.create(username=f"{prefix}-owner-{i}") for i in range(2)]
    workspace = workspaces.workspace_create(actor=None, name=f"Bench {prefix}", slug=f"bench-{prefix}",
                                            owners=owners)
    agents = [registry.agent_create(actor=None, workspace=workspace, spec=registry.AgentSpec(
        blueprint=blueprint, name=f"{prefix}-agent-{i:02d}", identity_type="agent_identity", scope="workspace",
        sponsors=owners, owners=owners)).agent for i in range(AGENTS)]
    return workspace, owners, agents


def load(agents: list[Agent], count: int, *, oldest_days: float, newest_days: float = 0.0) -> float:
    """Insert ``count`` sign-ins spread evenly between ``oldest_days`` and ``newest_days`` ago, by SQL; returns
    seconds. The days get their partitions first (rows never pile up in the default partition). Foreign keys are
    not checked row by row (every agent id is real), as a bulk load into a fresh table would do."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        return _load_orm(agents, count, now, oldest_days, newest_days)
    today = now.astimezone(UTC).date()
    partitions.create_days(today - timedelta(days=int(oldest_days) + 1), today - timedelta(days=int(newest_days)))
    table = connection.ops.quote_name(SignIn._meta.db_table)
    ids = [a.pk for a in agents]
    clients = list(Agent.objects.filter(pk__in=ids).order_by("pk").values_list("identity__client_id", flat=True))
    ids.sort()
    span = (oldest_days - newest_days) * 86400.0
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for first in range(0, count, LOAD_CHUNK):
            size = min(LOAD_CHUNK, count - first)
            cursor.execute(f"""
                INSERT INTO {table} (at, agent_id, client_id, actor_kind, ip, grant_type, requested_scopes,
                    granted_scopes, outcome, error, reason, policies, resource, credential_type, credential_issuer)
                SELECT %(now)s - make_interval(secs => %(newest)s + (g::float8 / %(total)s) * %(span)s),
                       (%(ids)s::bigint[])[1 + g %% %(agents)s], (%(clients)s::text[])[1 + g %% %(agents)s],
                       CASE WHEN g %% 97 = 0 THEN 'on_behalf_of' ELSE 'agent' END,
                       ('10.' || (g %% 7) || '.' || (g %% 251) || '.' || (g %% 13))::inet, 'client_credentials',
                       '["User.Read.All"]'::jsonb,
                       CASE WHEN g %% 50 = 0 THEN '[]'::jsonb ELSE '["User.Read.All"]'::jsonb END,
                       CASE WHEN g %% 50 = 0 THEN 'failure' WHEN g %% 199 = 0 THEN 'blocked' ELSE 'success' END,
                       CASE WHEN g %% 50 = 0 THEN 'invalid_client' ELSE '' END, '', '[]'::jsonb, '', 'secret', ''
                FROM generate_series(%(first)s, %(last)s) g""",
                           {"now": now, "newest": newest_days * 86400.0, "total": count, "span": span, "ids": ids,
                            "clients": clients, "agents": len(ids), "first": first, "last": first + size - 1})
        cursor.execute("SET LOCAL session_replication_role = origin")
        cursor.execute(f"ANALYZE {table}")
    return time.perf_counter() - started


def _load_orm(agents: list[Agent], count: int, now, oldest_days: float, newest_days: float) -> float:
    """SQLite's loader (its plain table, small n): the same rows through ``bulk_create``."""
    clients = dict(Agent.objects.filter(pk__in=[a.pk for a in agents]).values_list("pk", "identity__client_id"))
    span = (oldest_days - newest_days) * 86400.0
    started = time.perf_counter()
    SignIn.objects.bulk_create(
        (SignIn(at=now - timedelta(seconds=newest_days * 86400.0 + g / count * span),
                agent_id=agents[g % len(agents)].pk, client_id=clients[agents[g % len(agents)].pk],
                actor_kind="agent", ip=f"10.0.{g % 251}.{g % 13}",
                grant_type="client_credentials", requested_scopes=["User.Read.All"],
                granted_scopes=[] if g % 50 == 0 else ["User.Read.All"],
                outcome="failure" if g % 50 == 0 else "success", credential_type="secret")
         for g in range(count)), batch_size=2000)
    return time.perf_counter() - started


def _rollup() -> float:
    """Bring the usage rollup up to date, as its every-minute job would have (the registry and the agent facts
    read it); returns seconds."""
    started = time.perf_counter()
    rollup.catch_up()
    return time.perf_counter() - started


def _pages(workspace, agents) -> list[tuple[str, str]]:
    agent = agents[0]
    return [
        ("/agents/", "ga"), (f"/agents/{agent.pk}/", "ga"), ("/governance/sign-ins/", "ga"),
        (f"/governance/sign-ins/?agent={agent.name}", "ga"), (f"/api/v1/agent-facts/?workspace={workspace.slug}", "ga"),
        ("/agents/", "owner"), (f"/agents/{agent.pk}/", "owner"), ("/governance/sign-ins/", "owner"),
        (f"/governance/sign-ins/?agent={agent.name}", "owner"),
        (f"/api/v1/agent-facts/?workspace={workspace.slug}", "owner"),
    ]


def _time_pages(browsers: dict[str, Browser], pages) -> dict[tuple[str, str], float]:
    """Each page once to warm, then the best of three (seconds)."""
    figures = {}
    for url, who in pages:
        browsers[who].get(url)
        figures[(url, who)] = min(timed(lambda u=url, w=who: browsers[w].get(u))[0] for _ in range(3))
    return figures


@scenario("signin_scale")
def signin_scale(n):
    baseline_rows = min(BASELINE_ROWS, max(n // 10, 1))  # 10,000, or a tenth of a small n (tests)
    workspace, owners, agents = _fleet("signin-scale")
    browsers = {"ga": Browser(global_admin()), "owner": Browser(owners[0])}
    browsers["owner"].client.post("/workspaces/switch/", {"workspace": workspace.slug}, secure=True)
    pages = _pages(workspace, agents)

    load(agents, baseline_rows, oldest_days=DAYS)
    _rollup()
    small = _time_pages(browsers, pages)
    load_seconds = load(agents, n - baseline_rows, oldest_days=DAYS)
    rollup_seconds = _rollup()
    large = _time_pages(browsers, pages)

    figures = [{"page": url, "as": who, "ms": round(large[(url, who)] * 1000, 1),
                "baseline_ms": round(small[(url, who)] * 1000, 1),
                "ratio": round(large[(url, who)] / small[(url, who)], 2) if small[(url, who)] else None}
               for url, who in pages]
    slowest_large, slowest_small = max(large.values()), max(small.values())
    extra = {"pages": figures, "load_seconds": round(load_seconds, 1), "rollup_seconds": round(rollup_seconds, 1),
             "goal": "every ratio <= 2, every page <= 300 ms, agent facts <= 200 ms",
             "met": all((f["ratio"] or 0) <= 2 and f["ms"] <= (200 if "agent-facts" in f["page"] else 300)
                        for f in figures)}
    return Measured(slowest_large, 0, extra), f"same_pages_at_{baseline_rows}_rows", (slowest_small, 0)


signin_scale.default_n = 10_000_000


@scenario("signin_retention")
def signin_retention(n):
    """The retention job dropping a month of n sign-ins (30 day partitions) vs. the job with nothing to drop."""
    _workspace, _owners, agents = _fleet("signin-retention")
    retention = settings.SIGNIN_RETENTION_DAYS
    partitions.maintain()
    baseline = timed(partitions.maintain)  # nothing to create or drop: the job's own cost
    load_seconds = load(agents, n, oldest_days=retention + 31, newest_days=retention + 1.5)
    before = SignIn.objects.filter(at__lt=partitions.retention_cutoff()).count()
    result = {}
    measured = timed(lambda: result.update(partitions.maintain()))
    left = SignIn.objects.filter(at__lt=partitions.retention_cutoff()).count()
    if left or (partitions.is_partitioned() and result.get("dropped", 0) < 29):
        raise AssertionError(f"signin_retention: {result}, {left} rows past retention left")
    extra = {"rows_dropped": before, "partitions_dropped": result.get("dropped", 0),
             "rows_deleted": result.get("deleted", 0), "load_seconds": round(load_seconds, 1),
             "goal": "dropping a month of 10,000,000 rows <= 1 s"}
    return Measured(measured[0], measured[1], extra), "the_job_with_nothing_to_drop", baseline


signin_retention.default_n = 10_000_000
