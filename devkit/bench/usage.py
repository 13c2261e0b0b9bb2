"""The usage rollup's benchmark, registered with ``devkit.bench`` (docs/design.md, "Usage").

``usage_rollup``: n new sign-ins of the demo's agents over the last 30 days, loaded by one SQL statement
(``INSERT … SELECT … generate_series`` on PostgreSQL; the ORM on SQLite, for tests), then the ``rollup_sign_ins``
job catching up from its watermark, against a plain ``GROUP BY`` of the same rows into the same groups (the floor:
reading and grouping them, without writing the rollup). Goal on PostgreSQL: n = 1,000,000 in at most 10 s.
The job runs with no settle time (``rollup.catch_up``): nothing else writes in the bench's transaction, and the
settle time is a wait, not work.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from agents import registry
from agents.models import Agent, Blueprint
from devkit.bench.portal import scenario, timed
from governance.signin import partitions
from governance.signin.models import SignIn
from governance.usage import rollup
from portal import workspaces
from portal.models import User

AGENTS = 30
SPREAD_SECONDS = 30 * 86400
SCOPE_SETS = ('["User.Read.All"]', '["User.Read.All", "Policy.Read.All"]', '[]', '["AuditLog.Read.All"]')


class Measured(tuple):
    """``(seconds, queries)`` as ``manage.py bench`` unpacks it, with the job's counts in ``extra``."""

    def __new__(cls, seconds: float, queries: int, extra: dict):
        measured = super().__new__(cls, (seconds, queries))
        measured.extra = extra
        return measured


def _agents() -> list[tuple[int, str]]:
    """Up to ``AGENTS`` existing agents with an identity (the demo's); a few made for the bench when there are none."""
    agents = list(Agent.objects.filter(identity__isnull=False).order_by("pk")
                  .values_list("pk", "identity__client_id")[:AGENTS])
    if agents:
        return agents
    blueprint = Blueprint.objects.filter(is_complete=True, publisher_kind="microsoft").order_by("name").first()
    if blueprint is None:
        raise ImproperlyConfigured("bench needs the demo blueprints: run manage.py seed_demo first.")
    owners = [User.objects.create(username=f"usage-owner-{i}") for i in range(2)]
    workspace = workspaces.workspace_create(actor=None, name="Bench usage", slug="bench-usage", owners=owners)
    made = [registry.agent_create(actor=None, workspace=workspace, spec=registry.AgentSpec(
        blueprint=blueprint, name=f"usage-agent-{i}", identity_type="agent_identity", scope="workspace",
        sponsors=owners, owners=owners)).agent for i in range(3)]
    return [(agent.pk, agent.identity.client_id) for agent in made]


def load(count: int) -> None:
    """``count`` sign-ins, nine in ten successful, over four scope sets and two resources, spread over 30 days. On
    PostgreSQL the days get their partitions first and the log is analysed after the load, as the every-minute job
    would find it: rows piled in the default partition with stale statistics made the planner read that partition
    through its agent index, most of the measured time."""
    agents, now = _agents(), timezone.now()
    if connection.vendor != "postgresql":
        SignIn.objects.bulk_create(
            (SignIn(agent_id=agents[i % len(agents)][0], client_id=agents[i % len(agents)][1], actor_kind="agent",
                    at=now - timedelta(seconds=(i * 7919) % SPREAD_SECONDS), grant_type="client_credentials",
                    outcome="failure" if i % 10 == 0 else "success", requested_scopes=["User.Read.All"],
                    granted_scopes=[] if i % 10 == 0 else ["User.Read.All"],
                    resource="https://api.example/" if i % 4 == 0 else "") for i in range(count)),
            batch_size=2000)
        return
    today = now.astimezone(UTC).date()
    partitions.create_days(today - timedelta(days=SPREAD_SECONDS // 86400 + 1), today)
    with connection.cursor() as cursor:
        cursor.execute(f"""
            INSERT INTO {connection.ops.quote_name(SignIn._meta.db_table)}
                (at, agent_id, client_id, actor_kind, ip, grant_type, requested_scopes, resource, granted_scopes,
                 outcome, error, reason, policies, credential_type, credential_issuer)
            SELECT %s::timestamptz - make_interval(secs => (i::bigint * 7919) %% {SPREAD_SECONDS}),
                   (%s::bigint[])[1 + i %% %s], (%s::text[])[1 + i %% %s], 'agent', '10.0.0.1',
                   'client_credentials', (%s::jsonb[])[1 + i %% 4],
                   CASE WHEN i %% 4 = 0 THEN 'https://api.example/' ELSE '' END,
                   CASE WHEN i %% 10 = 0 THEN '[]'::jsonb ELSE (%s::jsonb[])[1 + i %% 4] END,
                   CASE WHEN i %% 10 = 0 THEN 'failure' ELSE 'success' END, '', '', '[]'::jsonb, 'secret', ''
            FROM generate_series(1, %s) AS i""",
                       [now, [a[0] for a in agents], len(agents), [a[1] for a in agents], len(agents),
                        list(SCOPE_SETS), list(SCOPE_SETS), count])
        cursor.execute(f"ANALYZE {connection.ops.quote_name(SignIn._meta.db_table)}")


def _group_same_rows(after: int) -> None:
    """The floor: the same rows read and grouped into the rollup's groups, nothing written."""
    table = connection.ops.quote_name(SignIn._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"""
                SELECT COUNT(*) FROM (
                    SELECT s.agent_id, (s.at AT TIME ZONE 'UTC')::date, g.scope, s.resource, COUNT(*), MIN(s.at),
                           MAX(s.at)
                    FROM {table} s LEFT JOIN LATERAL jsonb_array_elements_text(s.granted_scopes) AS g(scope) ON TRUE
                    WHERE s.id > %s AND s.agent_id IS NOT NULL GROUP BY 1, 2, 3, 4) AS groups""", [after])
        else:
            cursor.execute(f"""
                SELECT COUNT(*) FROM (
                    SELECT s.agent_id, date(s.at), g.value, s.resource, COUNT(*), MIN(s.at), MAX(s.at)
                    FROM {table} s LEFT JOIN json_each(s.granted_scopes) AS g ON 1
                    WHERE s.id > %s AND s.agent_id IS NOT NULL GROUP BY 1, 2, 3, 4)""", [after])
        cursor.fetchone()


@scenario("usage_rollup")
def usage_rollup(n):
    """rollup_sign_ins catching up n new sign-ins vs. a plain GROUP BY of the same rows."""
    rollup.catch_up()  # the log as it was is integrated first: only the n new rows are measured
    after = rollup.watermark()
    load(n)
    baseline = timed(lambda: _group_same_rows(after))
    counts = {}
    seconds, queries = timed(lambda: counts.update(rollup.catch_up()))
    if rollup.watermark() <= after:
        raise ImproperlyConfigured("usage_rollup: the job integrated nothing.")
    return (Measured(seconds, queries, {"rows_written": counts["rows_written"], "batches": counts["batches"]}),
            "group_by_same_rows", baseline)


usage_rollup.default_n = 1_000_000
