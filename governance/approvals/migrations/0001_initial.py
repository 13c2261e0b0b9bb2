"""The approval request model moved here from the governance app when governance was split into sub-apps: the tables stay as they are (state only);
0002 renames them."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('agents', '0005_schedule_from_triggers'),
        ('governance', '0006_run_tokens_policy_state'),
        ('portal', '0003_notifications'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='ApprovalRequest',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('permissions', models.JSONField(default=list, help_text='The exact permission names, sorted, as requested.')),
                    ('digest', models.CharField(db_index=True, max_length=64)),
                    ('justification', models.TextField()),
                    ('status', models.CharField(choices=[('pending', 'Pending'), ('approved', 'Approved'), ('denied', 'Denied'), ('withdrawn', 'Withdrawn'), ('expired', 'Expired')], db_index=True, default='pending', max_length=20)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('expires_at', models.DateTimeField(db_index=True)),
                    ('decided_at', models.DateTimeField(blank=True, null=True)),
                    ('reason', models.TextField(blank=True)),
                    ('agent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='approval_requests', to='agents.agent')),
                    ('blueprint', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='approval_requests', to='agents.blueprint')),
                    ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('requester', models.ForeignKey(blank=True, help_text='Empty when the system asked (a command or job).', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='approval_requests', to='portal.workspace')),
                ],
                options={
                    'db_table': 'governance_approvalrequest',
                    'ordering': ['-created_at', '-pk'],
                    'indexes': [models.Index(fields=['status', 'expires_at'], name='governance__status_04cd1f_idx')],
                    'constraints': [models.CheckConstraint(condition=models.Q(('expires_at__gt', models.F('created_at'))), name='approval_expires_after_creation'), models.UniqueConstraint(condition=models.Q(('status', 'pending')), fields=('agent',), name='approval_one_pending_per_agent'), models.CheckConstraint(condition=models.Q(models.Q(('status', 'denied'), _negated=True), models.Q(('reason', ''), _negated=True), _connector='OR'), name='approval_denial_has_reason'), models.CheckConstraint(condition=models.Q(models.Q(('status__in', ['approved', 'denied']), _negated=True), models.Q(('decided_at__isnull', False), ('decided_by__isnull', False)), _connector='OR'), name='approval_decision_has_decider')],
                },
            ),
        ]),
    ]
