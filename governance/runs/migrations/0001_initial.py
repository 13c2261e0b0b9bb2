"""The session, run and feedback models moved here from the agents app when governance was split into sub-apps: the tables stay as they are (state only);
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
                name='Session',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('title', models.CharField(blank=True, max_length=200)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='sessions', to='agents.agent')),
                    ('opened_by', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'agents_session',
                    'ordering': ['-created_at', '-pk'],
                },
            ),
            migrations.CreateModel(
                name='Run',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('refused', 'Refused'), ('cancelled', 'Cancelled')], db_index=True, default='queued', max_length=20)),
                    ('trigger', models.CharField(choices=[('manual', 'Started by a person'), ('schedule', 'Schedule'), ('api', 'API')], default='manual', max_length=20)),
                    ('inputs', models.JSONField(blank=True, default=dict)),
                    ('scopes', models.JSONField(blank=True, default=list, help_text='What the run may read, decided at its start.')),
                    ('refused_reason', models.CharField(blank=True, max_length=300)),
                    ('policies', models.JSONField(blank=True, default=list)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('started_at', models.DateTimeField(blank=True, null=True)),
                    ('finished_at', models.DateTimeField(blank=True, null=True)),
                    ('time_limit_seconds', models.PositiveIntegerField(default=300)),
                    ('deadline_at', models.DateTimeField(blank=True, db_index=True, help_text='Set when the run starts: a run still going then has timed out.', null=True)),
                    ('error', models.CharField(blank=True, max_length=500)),
                    ('summary', models.TextField(blank=True)),
                    ('findings', models.JSONField(blank=True, default=list)),
                    ('reads', models.JSONField(blank=True, default=list, help_text='The API reads the run made with its token.')),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='runs', to='agents.agent')),
                    ('cancelled_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('delegated_for', models.ForeignKey(blank=True, help_text='The person whose rights bound the run.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('started_by', models.ForeignKey(blank=True, help_text='Empty for a scheduled run.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('session', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='runs', to='runs.session')),
                ],
                options={
                    'db_table': 'agents_run',
                    'ordering': ['-created_at', '-pk'],
                },
            ),
            migrations.CreateModel(
                name='Feedback',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('rating', models.PositiveSmallIntegerField(choices=[(1, '1 / 5'), (2, '2 / 5'), (3, '3 / 5'), (4, '4 / 5'), (5, '5 / 5')])),
                    ('comment', models.TextField(blank=True, max_length=2000)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='feedback', to='agents.agent')),
                    ('author', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='feedback', to='runs.run')),
                ],
                options={
                    'db_table': 'agents_feedback',
                    'ordering': ['-created_at', '-pk'],
                    'indexes': [models.Index(fields=['agent', '-created_at'], name='feedback_agent_created')],
                    'constraints': [models.UniqueConstraint(fields=('run', 'author'), name='feedback_one_per_person_and_run'), models.CheckConstraint(condition=models.Q(('rating__gte', 1), ('rating__lte', 5)), name='feedback_rating_1_to_5')],
                },
            ),
            migrations.AddIndex(
                model_name='session',
                index=models.Index(fields=['agent', '-created_at'], name='session_agent_created'),
            ),
            migrations.AddIndex(
                model_name='run',
                index=models.Index(fields=['agent', '-created_at'], name='run_agent_created'),
            ),
        ]),
    ]
