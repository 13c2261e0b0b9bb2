"""The audit trail becomes a Merkle log (docs/design.md, R23).

Before anything changes, the old hash chain is verified over every existing event and the head it ends at is
recorded in the new ``AuditLogState`` row (the "marker"); the events keep their ``prev_hash``/``hash``, so
``verify_audit_log`` can still recompute the chain up to that marker. The sequencer's first run then integrates
them into the tree (oldest id first, their chain hashes included in each leaf). A chain that does not verify stops
the migration, naming the event, unless ``AUDIT_MIGRATION_ACCEPT_BROKEN_CHAIN=1`` (the break is then recorded).
"""

import hashlib
import json
import os
from datetime import UTC

from django.db import migrations, models
from django.utils import timezone

GENESIS_HASH = "0" * 64
HASHED_FIELDS = (
    "created_at", "actor_name", "actor_kind", "action", "target_type", "target_id", "target_label",
    "workspace_id", "before", "after", "request_id", "prev_hash",
)


def _chain_hash(fields):
    canonical = {name: fields[name] for name in HASHED_FIELDS}
    canonical["created_at"] = canonical["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
    canonical["target_id"] = str(canonical["target_id"] or "")
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def verify_chain_and_mark(apps, schema_editor):
    AuditEvent = apps.get_model("portal", "AuditEvent")
    AuditChainHead = apps.get_model("portal", "AuditChainHead")
    AuditLogState = apps.get_model("portal", "AuditLogState")
    expected_prev, checked, last_id, broken = GENESIS_HASH, 0, 0, ""
    rows = AuditEvent.objects.order_by("id").values_list("id", "hash", *HASHED_FIELDS).iterator(chunk_size=5000)
    for event_id, stored, *values in rows:
        fields = dict(zip(HASHED_FIELDS, values, strict=True))
        if fields["prev_hash"] != expected_prev or _chain_hash(fields) != stored:
            broken = f"event #{event_id} does not fit the chain (changed, or an event before it removed)"
            break
        expected_prev, last_id, checked = stored, event_id, checked + 1
    head = AuditChainHead.objects.filter(pk=1).first()
    if not broken and head is not None and (head.last_hash, head.last_event_id) != (expected_prev, last_id):
        broken = f"the chain ends at event #{last_id}, not at its recorded head #{head.last_event_id}"
    if broken and os.environ.get("AUDIT_MIGRATION_ACCEPT_BROKEN_CHAIN") != "1":
        raise RuntimeError(f"The audit trail's hash chain does not verify: {broken}. Nothing was migrated. "
                           "Investigate, or set AUDIT_MIGRATION_ACCEPT_BROKEN_CHAIN=1 to migrate it as it is.")
    AuditLogState.objects.update_or_create(pk=1, defaults={
        "legacy_chain_events": checked, "legacy_chain_last_event_id": last_id,
        "legacy_chain_head_hash": expected_prev if checked else "",
        "legacy_chain_verified_at": timezone.now(),
    })


def restore_chain_head(apps, schema_editor):
    AuditChainHead = apps.get_model("portal", "AuditChainHead")
    state = apps.get_model("portal", "AuditLogState").objects.filter(pk=1).first()
    if state is not None:
        AuditChainHead.objects.update_or_create(pk=1, defaults={
            "last_event_id": state.legacy_chain_last_event_id,
            "last_hash": state.legacy_chain_head_hash or GENESIS_HASH})


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0009_workspace_forbid_new_secrets'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditLogState',
            fields=[
                ('id', models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ('size', models.BigIntegerField(default=0)),
                ('frontier', models.JSONField(blank=True, default=list)),
                ('legacy_chain_events', models.BigIntegerField(default=0)),
                ('legacy_chain_last_event_id', models.BigIntegerField(default=0)),
                ('legacy_chain_head_hash', models.CharField(blank=True, max_length=64)),
                ('legacy_chain_verified_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='AuditTreeHead',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('size', models.BigIntegerField(unique=True)),
                ('root_hash', models.CharField(max_length=64)),
                ('timestamp_ms', models.BigIntegerField()),
                ('signature', models.CharField(max_length=128)),
                ('key_id', models.CharField(max_length=16)),
            ],
            options={
                'ordering': ['-size'],
            },
        ),
        migrations.AddField(
            model_name='auditevent',
            name='leaf_hash',
            field=models.CharField(blank=True, default='', editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name='auditevent',
            name='leaf_index',
            field=models.BigIntegerField(blank=True, editable=False, null=True, unique=True),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='hash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='prev_hash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AddIndex(
            model_name='auditevent',
            index=models.Index(condition=models.Q(('leaf_index__isnull', True)), fields=['id'],
                               name='audit_event_pending'),
        ),
        migrations.AddConstraint(
            model_name='auditlogstate',
            constraint=models.CheckConstraint(condition=models.Q(('id', 1)), name='audit_log_state_singleton'),
        ),
        migrations.AddConstraint(
            model_name='audittreehead',
            constraint=models.CheckConstraint(condition=models.Q(('size__gt', 0)), name='audit_tree_head_not_empty'),
        ),
        migrations.RunPython(verify_chain_and_mark, restore_chain_head),
        migrations.DeleteModel(
            name='AuditChainHead',
        ),
    ]
