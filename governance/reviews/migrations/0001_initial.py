"""The access review models moved here from the governance app when governance was split into sub-apps: the tables stay as they are (state only);
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
        ('access', '0001_initial'),
        ('portal', '0003_notifications'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='AccessReview',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=150)),
                    ('description', models.TextField(blank=True)),
                    ('scope_kind', models.CharField(choices=[('packages', 'Assignments of access packages'), ('workspace_agents', 'All agents of the workspace'), ('partner_agents', 'All partner agents of the workspace')], default='packages', max_length=30)),
                    ('reviewer_kind', models.CharField(choices=[('sponsors', "Each agent's sponsors"), ('owners', "Each agent's owners"), ('named', 'Named people')], default='sponsors', max_length=20)),
                    ('recurrence', models.CharField(choices=[('once', 'One-off'), ('weekly', 'Weekly'), ('monthly', 'Monthly'), ('quarterly', 'Quarterly')], default='once', max_length=20)),
                    ('starts_at', models.DateTimeField(help_text='The start of the first period.')),
                    ('duration_days', models.PositiveIntegerField(default=14)),
                    ('auto_apply', models.BooleanField(default=True, help_text='Apply the results when an instance ends.')),
                    ('no_response', models.CharField(choices=[('keep', 'Keep the access'), ('remove', 'Remove the access'), ('recommendation', 'Follow the recommendation')], default='recommendation', max_length=20)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('active', models.BooleanField(default=True, help_text='Inactive campaigns open no new instances.')),
                    ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('fallback_reviewer', models.ForeignKey(blank=True, help_text='Reviews the items that have no reviewer.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('named_reviewers', models.ManyToManyField(blank=True, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('packages', models.ManyToManyField(blank=True, related_name='access_reviews', to='access.accesspackage')),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='access_reviews', to='portal.workspace')),
                ],
                options={
                    'db_table': 'governance_accessreview',
                    'ordering': ['name', 'pk'],
                },
            ),
            migrations.CreateModel(
                name='ReviewInstance',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('starts_at', models.DateTimeField()),
                    ('ends_at', models.DateTimeField(db_index=True)),
                    ('status', models.CharField(choices=[('open', 'Open'), ('closed', 'Closed'), ('applied', 'Results applied')], default='open', max_length=20)),
                    ('reminders_sent', models.JSONField(blank=True, default=list, help_text="'halfway' and 'last_day', once each.")),
                    ('closed_at', models.DateTimeField(blank=True, null=True)),
                    ('applied_at', models.DateTimeField(blank=True, null=True)),
                    ('campaign', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='instances', to='reviews.accessreview')),
                    ('closed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_reviewinstance',
                    'ordering': ['-starts_at', '-pk'],
                },
            ),
            migrations.CreateModel(
                name='ReviewItem',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('access', models.CharField(help_text='The access under review, as a reviewer reads it.', max_length=500)),
                    ('granted_at', models.DateTimeField(blank=True, null=True)),
                    ('granted_by', models.CharField(blank=True, max_length=300)),
                    ('ends_at', models.DateTimeField(blank=True, null=True)),
                    ('last_used_at', models.DateTimeField(blank=True, null=True)),
                    ('recommendation', models.CharField(choices=[('approve', 'Approve'), ('deny', 'Deny'), ('dont_know', "Don't know")], max_length=20)),
                    ('recommendation_reason', models.CharField(max_length=300)),
                    ('final_decision', models.CharField(blank=True, choices=[('approve', 'Approve'), ('deny', 'Deny'), ('dont_know', "Don't know")], max_length=20)),
                    ('final_source', models.CharField(blank=True, help_text="'reviewer' or 'default'.", max_length=20)),
                    ('applied_at', models.DateTimeField(blank=True, null=True)),
                    ('applied_result', models.CharField(blank=True, max_length=200)),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='review_items', to='agents.agent')),
                    ('assignment', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='review_items', to='access.assignment')),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='reviews.reviewinstance')),
                ],
                options={
                    'db_table': 'governance_reviewitem',
                    'ordering': ['pk'],
                },
            ),
            migrations.CreateModel(
                name='ReviewDecision',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('decision', models.CharField(choices=[('approve', 'Approve'), ('deny', 'Deny'), ('dont_know', "Don't know")], max_length=20)),
                    ('justification', models.TextField(blank=True)),
                    ('decided_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('reviewer', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('item', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='decisions', to='reviews.reviewitem')),
                ],
                options={
                    'db_table': 'governance_reviewdecision',
                    'ordering': ['decided_at', 'pk'],
                },
            ),
            migrations.CreateModel(
                name='ReviewItemReviewer',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('instance', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='reviews.reviewinstance')),
                    ('item', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='reviews.reviewitem')),
                    ('reviewer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_reviewitemreviewer',
                },
            ),
            migrations.AddField(
                model_name='reviewitem',
                name='reviewers',
                field=models.ManyToManyField(related_name='+', through='reviews.ReviewItemReviewer', to=settings.AUTH_USER_MODEL),
            ),
            migrations.AddIndex(
                model_name='accessreview',
                index=models.Index(fields=['active', 'starts_at'], name='governance__active_b28bc4_idx'),
            ),
            migrations.AddConstraint(
                model_name='accessreview',
                constraint=models.UniqueConstraint(fields=('workspace', 'name'), name='review_unique_name'),
            ),
            migrations.AddConstraint(
                model_name='accessreview',
                constraint=models.CheckConstraint(condition=models.Q(('duration_days__gt', 0)), name='review_duration_positive'),
            ),
            migrations.AddIndex(
                model_name='reviewinstance',
                index=models.Index(fields=['status', 'ends_at'], name='governance__status_cc3352_idx'),
            ),
            migrations.AddConstraint(
                model_name='reviewinstance',
                constraint=models.UniqueConstraint(fields=('campaign', 'starts_at'), name='review_instance_once_per_period'),
            ),
            migrations.AddConstraint(
                model_name='reviewinstance',
                constraint=models.CheckConstraint(condition=models.Q(('ends_at__gt', models.F('starts_at'))), name='review_instance_ends_after_start'),
            ),
            migrations.AddConstraint(
                model_name='reviewinstance',
                constraint=models.CheckConstraint(condition=models.Q(('status', 'open'), ('closed_at__isnull', False), _connector='OR'), name='review_instance_closed_has_time'),
            ),
            migrations.AddConstraint(
                model_name='reviewdecision',
                constraint=models.UniqueConstraint(fields=('item', 'reviewer'), name='review_decision_one_per_reviewer'),
            ),
            migrations.AddConstraint(
                model_name='reviewdecision',
                constraint=models.CheckConstraint(condition=models.Q(models.Q(('decision', 'deny'), _negated=True), models.Q(('justification', ''), _negated=True), _connector='OR'), name='review_deny_has_justification'),
            ),
            migrations.AddIndex(
                model_name='reviewitemreviewer',
                index=models.Index(fields=['reviewer', 'instance'], name='governance__reviewe_0dc850_idx'),
            ),
            migrations.AddConstraint(
                model_name='reviewitemreviewer',
                constraint=models.UniqueConstraint(fields=('item', 'reviewer'), name='review_item_reviewer_once'),
            ),
            migrations.AddIndex(
                model_name='reviewitem',
                index=models.Index(fields=['instance', 'final_decision', 'applied_at'], name='governance__instanc_94293b_idx'),
            ),
            migrations.AddConstraint(
                model_name='reviewitem',
                constraint=models.CheckConstraint(condition=models.Q(('recommendation__in', ['approve', 'deny'])), name='review_item_recommends_approve_or_deny'),
            ),
            migrations.AddConstraint(
                model_name='reviewitem',
                constraint=models.CheckConstraint(condition=models.Q(('final_decision__in', ['', 'approve', 'deny'])), name='review_item_final_is_approve_or_deny'),
            ),
        ]),
    ]
