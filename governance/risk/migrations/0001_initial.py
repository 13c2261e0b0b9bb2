"""The risk detection and remediation policy models moved here from the governance app when it was split into
sub-apps: state only, the tables stay as they are; 0002 renames them."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('agents', '0005_schedule_from_triggers'),
        ('governance', '0006_run_tokens_policy_state'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='RiskDetection',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(choices=[('new_scope', 'Scope never requested before'), ('request_burst', 'Burst of token requests'), ('failed_credentials', 'Repeated failed client authentication'), ('orphaned_use', 'Used while orphaned (no sponsor)'), ('admin_confirmed', 'Confirmed compromised by an administrator')], max_length=30)),
                    ('level', models.CharField(choices=[('none', 'None'), ('low', 'Low'), ('medium', 'Medium'), ('high', 'High')], max_length=10)),
                    ('key', models.CharField(blank=True, help_text='What makes it distinct, e.g. the new scope.', max_length=200)),
                    ('detail', models.CharField(blank=True, max_length=300)),
                    ('status', models.CharField(choices=[('open', 'Open'), ('confirmed_compromised', 'Confirmed compromised'), ('confirmed_safe', 'Confirmed safe'), ('dismissed', 'Dismissed')], db_index=True, default='open', max_length=30)),
                    ('detected_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('resolved_at', models.DateTimeField(blank=True, null=True)),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='risk_detections', to='agents.agent')),
                    ('resolved_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_riskdetection',
                    'ordering': ['-detected_at', '-pk'],
                },
            ),
            migrations.CreateModel(
                name='RiskRemediationPolicy',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('enabled', models.BooleanField(default=False)),
                    ('min_level', models.CharField(choices=[('none', 'None'), ('low', 'Low'), ('medium', 'Medium'), ('high', 'High')], default='high', max_length=10)),
                    ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_riskremediationpolicy',
                },
            ),
            migrations.AddIndex(
                model_name='riskdetection',
                index=models.Index(fields=['agent', 'status'], name='detection_agent_status'),
            ),
            migrations.AddConstraint(
                model_name='riskdetection',
                constraint=models.UniqueConstraint(fields=('agent', 'kind', 'key'), name='detection_unique_key'),
            ),
        ]),
    ]
