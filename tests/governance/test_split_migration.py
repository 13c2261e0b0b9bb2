"""Governance became sub-apps (approvals, access, reviews, conditional_access, signin, risk, runs) and the session, run
and feedback models moved from the registry to runs. A database migrated before that change goes forward with every
row of every moved table intact, under the tables' new names."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from agents.models import Agent
from governance.access.models import AccessPackage, AssignmentPolicy
from governance.conditional_access.models import ConditionalAccessPolicy
from governance.reviews.choices import ReviewDecisionKind
from governance.reviews.models import AccessReview, ReviewDecision, ReviewItem
from governance.risk.models import RiskRemediationPolicy
from governance.signin.models import ResourceServer
from portal.models import User

SUB_APPS = ["approvals", "access", "reviews", "conditional_access", "signin", "risk", "runs"]
PREVIOUS_HEAD = [("governance", "0006_run_tokens_policy_state"), ("agents", "0005_schedule_from_triggers")]
# Models the sub-apps gained after the split: they have no table before it, so nothing of theirs moved.
AFTER_THE_SPLIT = {("signin", "signinexport"), ("reviews", "reviewitempermission")}


def moved_tables() -> dict[str, str]:
    """{table before the split: table now}, many-to-many tables included."""
    tables = {}
    for label in SUB_APPS:
        for model in apps.get_app_config(label).get_models():
            if (label, model._meta.model_name) in AFTER_THE_SPLIT:
                continue
            old = f"{'agents' if label == 'runs' else 'governance'}_{model._meta.model_name}"
            tables[old] = model._meta.db_table
            for field in model._meta.local_many_to_many:
                if field.remote_field.through._meta.auto_created:
                    tables[f"{old}_{field.name}"] = field.remote_field.through._meta.db_table
    return tables


def rows(table: str) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)} ORDER BY 1")
        names = [column[0] for column in cursor.description]
        return [{name: str(value) for name, value in zip(names, row, strict=True)} for row in cursor.fetchall()]


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def kept(content: list[dict], names: set[str]) -> list[dict]:
    """Rows cut to the columns a table had at the previous head: columns added by later migrations (resource
    indicators, conditional access by resource) are dropped going back and come back empty going forward."""
    return [{name: value for name, value in row.items() if name in names} for row in content]


def existing_tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)


def _fill_every_moved_table() -> None:
    """The demo data, plus a row in the few tables it leaves empty."""
    call_command("seed_demo", stdout=open("/dev/null", "w"))  # noqa: SIM115
    ga, owner = User.objects.get(username="ga"), User.objects.get(username="owner")
    agent = Agent.objects.filter(workspace__slug="soc").order_by("pk").first()
    review = AccessReview.objects.order_by("pk").first()
    review.named_reviewers.add(owner)
    review.packages.add(*AccessPackage.objects.filter(workspace=review.workspace))
    AssignmentPolicy.objects.order_by("pk").first().second_approvers.add(ga)
    policy = ConditionalAccessPolicy.objects.order_by("pk").first()
    policy.agents.add(agent)
    policy.excluded_agents.add(Agent.objects.filter(workspace__slug="soc").order_by("-pk").first())
    ResourceServer.objects.create(name="Ticketing API", client_id="rs-migration", secret_hash="0" * 64, created_by=ga)
    item = ReviewItem.objects.order_by("pk").first()
    ReviewDecision.objects.create(item=item, reviewer=owner, decision=ReviewDecisionKind.APPROVE)
    RiskRemediationPolicy.objects.create(enabled=False, updated_by=ga, updated_at=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_a_database_at_the_previous_head_migrates_forward_with_every_row_intact():
    _fill_every_moved_table()
    tables = moved_tables()
    assert len(tables) == 26
    before = {new: rows(new) for new in tables.values()}
    assert all(before.values()), [table for table, content in before.items() if not content]
    content_type_ids = {ct.model: ct.pk for ct in ContentType.objects.filter(app_label__in=SUB_APPS)}

    migrate(PREVIOUS_HEAD + [(label, None) for label in SUB_APPS])  # the schema as it was before the split
    present = existing_tables()
    assert set(tables) <= present and not set(tables.values()) & present
    then = {old: columns(old) for old in tables}
    assert {old: rows(old) for old in tables} == {old: kept(before[new], then[old]) for old, new in tables.items()}
    later = [model for _label, model in AFTER_THE_SPLIT]  # their content types stay: nothing moves them back
    assert ContentType.objects.filter(app_label__in=SUB_APPS).exclude(model__in=later).count() == 0
    assert ContentType.objects.get(app_label="agents", model="run").pk == content_type_ids["run"]

    executor = MigrationExecutor(connection)
    migrate(executor.loader.graph.leaf_nodes())  # forward to today's head
    present = existing_tables()
    assert set(tables.values()) <= present and not set(tables) & present
    assert {new: kept(rows(new), then[old]) for old, new in tables.items()} == \
        {new: kept(before[new], then[old]) for old, new in tables.items()}
    assert {ct.model: ct.pk for ct in ContentType.objects.filter(app_label__in=SUB_APPS)} == content_type_ids
    assert not MigrationExecutor(connection).migration_plan(executor.loader.graph.leaf_nodes())
    call_command("verify_audit_log", stdout=open("/dev/null", "w"))  # noqa: SIM115
