"""The audit log's leaves move to their own insert-only table (docs/design.md, R23).

Each sequenced event's ``leaf_index``/``leaf_hash`` is copied into an ``AuditLeaf`` row (the hash as 32 bytes),
then the two columns and the partial "pending" index leave the event table: the sequencer inserts leaves and never
updates an event again. The event's links to its actor and workspace lose their database constraints (each took a
share lock on that row in every audited write) and the workspace link its single-column index (the
(workspace, -id) index serves it). ``scanned_through`` starts at 0 (the sequencer's first run checks every
event). Reversible: going back copies the leaves into the columns.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 20_000


def copy_leaves_out(apps, schema_editor):
    AuditEvent = apps.get_model("portal", "AuditEvent")
    AuditLeaf = apps.get_model("portal", "AuditLeaf")
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {AuditLeaf._meta.db_table} (leaf_index, event_id, leaf_hash) "
                f"SELECT leaf_index, id, decode(leaf_hash, 'hex') FROM {AuditEvent._meta.db_table} "
                "WHERE leaf_index IS NOT NULL")
        return
    rows = AuditEvent.objects.filter(leaf_index__isnull=False).order_by("leaf_index").values_list(
        "leaf_index", "id", "leaf_hash").iterator(chunk_size=BATCH)
    batch = []
    for leaf_index, event_id, leaf_hash in rows:
        batch.append(AuditLeaf(leaf_index=leaf_index, event_id=event_id, leaf_hash=bytes.fromhex(leaf_hash)))
        if len(batch) == BATCH:
            AuditLeaf.objects.bulk_create(batch)
            batch = []
    AuditLeaf.objects.bulk_create(batch)


def copy_leaves_back(apps, schema_editor):
    AuditEvent = apps.get_model("portal", "AuditEvent")
    for leaf in apps.get_model("portal", "AuditLeaf").objects.order_by("leaf_index").iterator(chunk_size=BATCH):
        AuditEvent.objects.filter(pk=leaf.event_id).update(leaf_index=leaf.leaf_index,
                                                           leaf_hash=bytes(leaf.leaf_hash).hex())


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0011_four_eyes_changes'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditLeaf',
            fields=[
                ('leaf_index', models.BigIntegerField(primary_key=True, serialize=False)),
                ('leaf_hash', models.BinaryField(max_length=32)),
                ('event', models.OneToOneField(db_constraint=False,
                                               on_delete=django.db.models.deletion.DO_NOTHING,
                                               related_name='leaf', to='portal.auditevent')),
            ],
        ),
        migrations.RunPython(copy_leaves_out, copy_leaves_back),
        migrations.RemoveIndex(
            model_name='auditevent',
            name='audit_event_pending',
        ),
        migrations.RemoveField(
            model_name='auditevent',
            name='leaf_hash',
        ),
        migrations.RemoveField(
            model_name='auditevent',
            name='leaf_index',
        ),
        migrations.AddField(
            model_name='auditlogstate',
            name='candidate_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='auditlogstate',
            name='candidate_id',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='auditlogstate',
            name='scanned_through',
            field=models.BigIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='workspace',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True,
                                    on_delete=django.db.models.deletion.PROTECT, related_name='+',
                                    to='portal.workspace'),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='actor',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True,
                                    on_delete=django.db.models.deletion.SET_NULL, related_name='+',
                                    to=settings.AUTH_USER_MODEL),
        ),
    ]
