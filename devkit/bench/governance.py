"""Governance benchmarks, registered with ``devkit.bench``.

``expire_assignments``: R18's expiry job over n assignments of which n // 10 are due — each ended with its audit
event, in batches (queries grow with batches, not rows) — against one SQL UPDATE of the same due rows.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import Permission as AuthPermission
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from agents import policy, sponsorship
from agents.choices import SponsorshipState
from agents.models import Agent, AgentUserObjectPermission, Blueprint, Sponsorship
from devkit.bench.portal import scenario, timed
from governance.access import lifecycle
from governance.access import services as access_packages
from governance.access.choices import ApproverKind, AssignmentStatus, DurationKind
from governance.access.models import Assignment
from portal import workspaces
from portal.models import AuditEvent, Permission, User

AGENTS = 1000  # agents × packages = n: one open assignment per (package, agent)


def _fleet(count: int):
    """A workspace with two owners, ``count`` bulk-created active agents, and the sponsor of them all."""
    blueprint = Blueprint.objects.filter(is_complete=True, publisher_kind="microsoft").order_by("name").first()
    if blueprint is None:
        raise ImproperlyConfigured("bench needs the demo blueprints: run manage.py seed_demo first.")
    owners = [User.objects.create(username=f"expiry-owner-{i}") for i in range(2)]
    workspace = workspaces.workspace_create(actor=None, name="Bench expiry", slug="bench-expiry", owners=owners)
    now = timezone.now()
    agents = Agent.objects.bulk_create(
        (Agent(workspace=workspace, blueprint=blueprint, name=f"expiry-agent-{i:05d}", scope="workspace",
               identity_type="agent_identity", status="active", created_by=owners[0], created_at=now)
         for i in range(count)), batch_size=5000)
    sponsor = AuthPermission.objects.get(content_type__app_label="agents", codename=policy.SPONSOR_AGENT)
    AgentUserObjectPermission.objects.bulk_create(
        (AgentUserObjectPermission(permission=sponsor, user=owners[0], content_object=a) for a in agents),
        batch_size=5000)
    # ... who has accepted (R30, docs/sponsorship.md): only an accepted sponsor counts as one
    Sponsorship.objects.bulk_create(
        (Sponsorship(agent=a, user=owners[0], state=SponsorshipState.ACCEPTED, requested_at=now, decided_at=now,
                     attested_at=now, due_at=sponsorship.due_after(now)) for a in agents), batch_size=5000)
    return workspace, owners, agents


def _packages(workspace, count: int):
    permissions = list(Permission.objects.filter(kind="application", privileged=False,
                                                 name="SecurityIncident.Read.All"))
    return [access_packages.package_save(
        actor=None, workspace=workspace, name=f"Bench package {i:04d}", permissions=permissions,
        policy={"approver_kind": ApproverKind.NONE, "duration_kind": DurationKind.DAYS, "duration_value": 30})
        for i in range(count)]


def _assignments(packages, agents, owner, n: int) -> list[int]:
    """n active assignments; every tenth (n // 10 in all) ended within the last hours. Returns the due pks."""
    now = timezone.now()
    due_total = n // 10
    rows = []
    for i in range(n):
        package, agent = packages[i // len(agents)], agents[i % len(agents)]
        due = i % 10 == 0 and i // 10 < due_total
        ends = now - timedelta(seconds=30 + (i * 7) % 36_000) if due else now + timedelta(hours=1 + i % 2000)
        rows.append(Assignment(package=package, agent=agent, status=AssignmentStatus.ACTIVE, requested_by=owner,
                               requested_at=now - timedelta(days=31), request_expires_at=now - timedelta(days=24),
                               starts_at=now - timedelta(days=30), expires_at=ends))
    created = Assignment.objects.bulk_create(rows, batch_size=5000)
    return [a.pk for a, i in zip(created, range(n), strict=True) if i % 10 == 0 and i // 10 < due_total]


@scenario("expire_assignments")
def expire_assignments(n):
    """expire_assignments over n assignments (n // 10 due, each with its audit event) vs. one UPDATE of them."""
    agent_count = min(n, AGENTS)
    workspace, owners, agents = _fleet(agent_count)
    packages = _packages(workspace, -(-n // agent_count))
    due = _assignments(packages, agents, owners[0], n)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Assignment._meta.db_table}")
    now = timezone.now()
    due_now = Assignment.objects.filter(status=AssignmentStatus.ACTIVE, expires_at__lte=now)
    already_due = due_now.exclude(pk__in=due).count()  # demo data that ended meanwhile, expired too

    # The floor: the same rows ended by one UPDATE (no audit, no batches), rolled back before the job runs.
    savepoint = transaction.savepoint()
    baseline = timed(lambda: due_now.update(status=AssignmentStatus.EXPIRED, ended_at=now, end_reason="expired"))
    transaction.savepoint_rollback(savepoint)

    events_before = AuditEvent.objects.filter(action="assignment.expire").count()
    result = {}
    measured = timed(lambda: result.update(lifecycle.expire_assignments()))
    expired = Assignment.objects.filter(pk__in=due, status=AssignmentStatus.EXPIRED).count()
    if expired != len(due) or result["expired"] != len(due) + already_due:
        raise AssertionError(f"expire_assignments ended {result['expired']} ({expired} of the {len(due)} due)")
    if Assignment.objects.filter(package__in=packages, status=AssignmentStatus.ACTIVE).count() != n - len(due):
        raise AssertionError("expire_assignments ended assignments that were not due")
    events = AuditEvent.objects.filter(action="assignment.expire").count() - events_before
    if events != result["expired"]:
        raise AssertionError(f"{events} audit events for {result['expired']} expired assignments")
    return measured, "single_sql_update_same_rows", baseline


expire_assignments.default_n = 100_000


# --- access reviews (R19) ------------------------------------------------------------------------------------------
def _review_over(n: int):
    """A package review (not yet open) over n open assignments of bulk-created agents sponsored by one owner."""
    from governance.reviews.campaigns import review_create

    agent_count = min(n, AGENTS)
    workspace, owners, agents = _fleet(agent_count)
    packages = _packages(workspace, -(-n // agent_count))
    _assignments(packages, agents, owners[0], n)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Assignment._meta.db_table}")
    campaign = review_create(actor=None, workspace=workspace, name="Bench review", scope_kind="packages",
                             packages=packages, reviewer_kind="sponsors", duration_days=14,
                             starts_at=timezone.now() + timedelta(days=1), no_response="keep")
    return campaign, packages


def _plain_items(instance, n: int) -> list:
    from governance.reviews.models import ReviewItem

    agent = Agent.objects.filter(workspace=instance.campaign.workspace).first()
    now = timezone.now()
    return [ReviewItem(instance=instance, agent=agent, access=f"row {i}", granted_at=now, last_used_at=now,
                       recommendation="approve", recommendation_reason="floor") for i in range(n)]


@scenario("review_open")
def review_open(n):
    """Opening a review over n assignments (items with evidence, reviewers, recommendations; queries per batch)
    vs. a plain bulk insert of n item rows (the floor)."""
    from governance.reviews.models import ReviewInstance, ReviewItem
    from governance.reviews.opening import review_instance_open
    from governance.reviews.selectors import BATCH

    campaign, _packages_ = _review_over(n)
    start = timezone.now()
    savepoint = transaction.savepoint()
    floor = ReviewInstance.objects.create(campaign=campaign, starts_at=start - timedelta(days=1), ends_at=start)
    baseline = timed(lambda: ReviewItem.objects.bulk_create(_plain_items(floor, n), batch_size=BATCH))
    transaction.savepoint_rollback(savepoint)
    result = {}
    measured = timed(lambda: result.update(instance=review_instance_open(campaign=campaign, starts_at=start)))
    items = result["instance"].items.count()
    if items != n:
        raise AssertionError(f"review_open created {items} items for {n} assignments")
    return measured, "bulk_insert_same_items", baseline


review_open.default_n = 50_000


@scenario("review_apply")
def review_apply(n):
    """Applying n denials of a closed review (batched revoke + one audit event each) vs. one UPDATE of the same
    assignments (the floor)."""
    from governance.reviews.applying import review_instance_apply, review_instance_close
    from governance.reviews.models import ReviewDecision
    from governance.reviews.opening import review_instance_open

    campaign, packages = _review_over(n)
    instance = review_instance_open(campaign=campaign, starts_at=timezone.now())
    reviewer = campaign.workspace.memberships.order_by("pk").first().user
    now = timezone.now()
    ReviewDecision.objects.bulk_create(
        (ReviewDecision(item_id=pk, reviewer=reviewer, decision="deny", justification="bench", decided_at=now)
         for pk in instance.items.values_list("pk", flat=True)), batch_size=5000)
    review_instance_close(actor=None, instance=instance)
    targets = Assignment.objects.filter(package__in=packages, status=AssignmentStatus.ACTIVE)
    savepoint = transaction.savepoint()
    baseline = timed(lambda: targets.update(status=AssignmentStatus.REVOKED, ended_at=now, end_reason="floor"))
    transaction.savepoint_rollback(savepoint)
    events_before = AuditEvent.objects.filter(action="assignment.revoke").count()
    result = {}
    measured = timed(lambda: result.update(review_instance_apply(instance=instance)))
    revoked = Assignment.objects.filter(package__in=packages, status=AssignmentStatus.REVOKED).count()
    events = AuditEvent.objects.filter(action="assignment.revoke").count() - events_before
    if result["removed"] != n or revoked != n or events != n:
        raise AssertionError(f"review_apply removed {result['removed']}, revoked {revoked}, {events} events of {n}")
    return measured, "single_sql_update_same_rows", baseline


review_apply.default_n = 50_000


@scenario("hygiene_run")
def hygiene_run(n):
    """A scheduled run of the Agent Hygiene Agent over a workspace of n agents, end to end in this process (the
    decision, the run's token and sign-in, the paginated API reads with that token, the findings, the audit
    events) vs. the same findings read straight from the database (``hygiene.findings``: the floor without the
    API)."""
    from agents import registry
    from governance.runs import builtin as builtin_agents
    from governance.runs import services as runs
    from governance.runs.builtin import hygiene

    builtin_agents.install()
    workspace, owners, _agents = _fleet(n)
    blueprint = Blueprint.objects.filter(name="AgentHygieneAgent").latest("version")
    agent = registry.agent_create(actor=None, workspace=workspace, spec=registry.AgentSpec(
        blueprint=blueprint, name="bench-hygiene", identity_type="agent_identity", scope="workspace",
        sponsors=owners, owners=owners)).agent
    baseline = timed(lambda: hygiene.findings(Agent.objects.filter(workspace=workspace)))
    result = {}
    measured = timed(lambda: result.update(run=runs.run_execute(runs.scheduled_run_start(agent).pk)))
    run = result["run"]
    single = sum(1 for f in run.findings if f["kind"] == "single_sponsor")
    if run.status != "succeeded" or single != n:
        raise AssertionError(f"hygiene_run: {run.status} {run.error}; {single} single-sponsor findings for {n}")
    return measured, "same_findings_from_the_database", baseline


hygiene_run.default_n = 2000
