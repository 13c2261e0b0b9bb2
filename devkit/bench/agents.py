"""Registry benchmarks: ``registry_list`` and ``bulk_provision``, registered with ``devkit.bench``."""

from __future__ import annotations

import io

from django.contrib.auth.models import Permission as AuthPermission
from django.db import connection
from django.utils import timezone

from agents import bulk, policy
from agents.models import Agent, AgentUserObjectPermission, Blueprint
from devkit.bench.portal import Browser, scenario, timed
from portal import workspaces
from portal.models import User

LIST_SMALL = 100


def _bench_workspace(prefix: str):
    owners = [User.objects.create(username=f"{prefix}-owner-{i}") for i in range(2)]
    workspace = workspaces.workspace_create(actor=None, name=f"Bench {prefix}", slug=f"bench-{prefix}", owners=owners)
    return workspace, owners


def _blueprint() -> Blueprint:
    blueprint = Blueprint.objects.filter(is_complete=True, publisher_kind="microsoft").order_by("name").first()
    if blueprint is None:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("bench needs the demo blueprints: run manage.py seed_demo first.")
    return blueprint


def _agent_rows(workspace, blueprint, owner, start: int, count: int) -> None:
    now = timezone.now()
    agents = Agent.objects.bulk_create(
        (Agent(workspace=workspace, blueprint=blueprint, name=f"bench-agent-{i:06d}", scope="workspace",
               identity_type="agent_identity", status="active", created_by=owner, created_at=now)
         for i in range(start, start + count)), batch_size=5000)
    sponsor = AuthPermission.objects.get(content_type__app_label="agents", codename=policy.SPONSOR_AGENT)
    AgentUserObjectPermission.objects.bulk_create(
        (AgentUserObjectPermission(permission=sponsor, user=owner, content_object=a) for a in agents), batch_size=5000)


@scenario("registry_list")
def registry_list(n):
    """/agents/ for an explicit workspace owner at 100 agents vs. at n agents: same queries, flat time."""
    blueprint = _blueprint()
    workspace, owners = _bench_workspace("list")
    _agent_rows(workspace, blueprint, owners[0], 0, LIST_SMALL)
    browser = Browser(owners[0])
    browser.client.post("/workspaces/switch/", {"workspace": workspace.slug}, secure=True)
    browser.get("/agents/")
    baseline = min((timed(lambda: browser.get("/agents/")) for _ in range(3)), key=lambda m: m[0])
    _agent_rows(workspace, blueprint, owners[0], LIST_SMALL, n - LIST_SMALL)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE agents_agent; ANALYZE agents_agentuserobjectpermission")
    browser.get("/agents/")
    measured = min((timed(lambda: browser.get("/agents/")) for _ in range(3)), key=lambda m: m[0])
    return measured, f"same_page_at_n_{LIST_SMALL}", baseline


registry_list.default_n = 100_000


def _bulk_csv(blueprint: Blueprint, owners, n: int) -> str:
    lines = ["blueprint,name,identity_type,scope,sponsors,owners,attributes,expires_at"]
    lines += [f"{blueprint.name}@{blueprint.version},bulk-{i:06d},agent_identity,workspace,{owners[0].username},"
              f"{owners[1].username},fleet=bench;shard={i % 3}," for i in range(n)]
    return "\n".join(lines) + "\n"


def _copy_floor(workspace, blueprint, owner, n: int) -> None:
    """The physical floor: the same agent rows written with PostgreSQL COPY (or one bulk insert elsewhere)."""
    now = timezone.now()
    if connection.vendor != "postgresql":
        Agent.objects.bulk_create(
            (Agent(workspace=workspace, blueprint=blueprint, name=f"floor-{i:06d}", scope="workspace",
                   identity_type="agent_identity", status="active", created_by=owner, created_at=now)
             for i in range(n)), batch_size=2000)
        return
    columns = ("workspace_id", "blueprint_id", "name", "scope", "kind", "identity_type", "status", "disabled_by",
               "created_by_id", "created_at", "risk_level", "schedule_period_seconds", "schedule_paused")
    with connection.cursor() as cursor, cursor.cursor.copy(
            f"COPY agents_agent ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(n):
            copy.write_row((workspace.pk, blueprint.pk, f"floor-{i:06d}", "workspace", "assistive",
                            "agent_identity", "active", "", owner.pk, now, "none", 0, False))


@scenario("bulk_provision")
def bulk_provision(n):
    """A bulk file of n agents (identities, permissions, agent users, credentials, sponsors, owners, attributes,
    audit events) vs. a PostgreSQL COPY of just the agent rows."""
    blueprint = _blueprint()
    workspace, owners = _bench_workspace("bulk")
    floor_workspace, _ = _bench_workspace("floor")
    baseline = timed(lambda: _copy_floor(floor_workspace, blueprint, owners[0], n))
    text = _bulk_csv(blueprint, owners, n)
    measured = timed(lambda: bulk.provision_file(actor=owners[0], workspace=workspace, stream=io.StringIO(text),
                                                 filename="bench.csv"))
    created = Agent.objects.filter(workspace=workspace).count()
    if created != n:
        raise AssertionError(f"bulk_provision created {created} agents, expected {n}")
    return measured, "postgresql_copy_agent_rows" if connection.vendor == "postgresql" else "bulk_insert_agent_rows", \
        baseline


bulk_provision.default_n = 10_000
