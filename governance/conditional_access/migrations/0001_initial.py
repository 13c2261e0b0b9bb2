"""The conditional-access policy model moved here from the governance app when governance was split into sub-apps: the tables stay as they are (state only);
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
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='ConditionalAccessPolicy',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=150, unique=True)),
                    ('description', models.TextField(blank=True)),
                    ('state', models.CharField(choices=[('on', 'On'), ('report_only', 'Report-only'), ('off', 'Off')], default='report_only', max_length=20)),
                    ('grant', models.CharField(choices=[('block', 'Block'), ('allow', 'Allow only when the conditions hold')], default='block', max_length=10)),
                    ('all_agents', models.BooleanField(default=False)),
                    ('agent_kinds', models.JSONField(blank=True, default=list)),
                    ('publisher_kinds', models.JSONField(blank=True, default=list)),
                    ('attribute_rules', models.JSONField(blank=True, default=list)),
                    ('min_risk_level', models.CharField(blank=True, choices=[('none', 'None'), ('low', 'Low'), ('medium', 'Medium'), ('high', 'High')], max_length=10)),
                    ('ip_ranges', models.JSONField(blank=True, default=list)),
                    ('time_windows', models.JSONField(blank=True, default=list)),
                    ('state_changed_at', models.DateTimeField(default=django.utils.timezone.now, help_text='Since when the policy has been in its current state.')),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('agents', models.ManyToManyField(blank=True, related_name='+', to='agents.agent')),
                    ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('excluded_agents', models.ManyToManyField(blank=True, related_name='+', to='agents.agent')),
                ],
                options={
                    'verbose_name_plural': 'conditional access policies',
                    'db_table': 'governance_conditionalaccesspolicy',
                    'ordering': ['name'],
                },
            ),
        ]),
    ]
