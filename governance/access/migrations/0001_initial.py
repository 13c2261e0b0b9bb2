"""The access package, policy and assignment models moved here from the governance app when governance was split into sub-apps: the tables stay as they are (state only);
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
                name='AccessPackage',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=150)),
                    ('description', models.TextField(blank=True)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('incompatible_with', models.ManyToManyField(blank=True, help_text='Separation of duties: an agent never holds both.', to='access.accesspackage')),
                    ('permissions', models.ManyToManyField(related_name='access_packages', to='portal.permission')),
                    ('workspace', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='access_packages', to='portal.workspace')),
                ],
                options={
                    'db_table': 'governance_accesspackage',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='Assignment',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('status', models.CharField(choices=[('pending', 'Pending approval'), ('active', 'Active'), ('expired', 'Expired'), ('revoked', 'Revoked'), ('denied', 'Denied'), ('request_expired', 'Request expired')], default='pending', max_length=20)),
                    ('justification', models.TextField(blank=True)),
                    ('requested_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('request_expires_at', models.DateTimeField()),
                    ('requested_hours', models.PositiveIntegerField(blank=True, null=True)),
                    ('stage', models.PositiveSmallIntegerField(default=1)),
                    ('starts_at', models.DateTimeField(blank=True, null=True)),
                    ('expires_at', models.DateTimeField(blank=True, null=True)),
                    ('extension_until', models.DateTimeField(blank=True, help_text='A requested extension, pending.', null=True)),
                    ('ended_at', models.DateTimeField(blank=True, null=True)),
                    ('end_reason', models.CharField(blank=True, max_length=200)),
                    ('reminded_days', models.JSONField(blank=True, default=list)),
                    ('agent', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='assignments', to='agents.agent')),
                    ('first_approver', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('package', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='assignments', to='access.accesspackage')),
                    ('requested_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('second_approver', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_assignment',
                    'ordering': ['-requested_at', '-pk'],
                },
            ),
            migrations.CreateModel(
                name='AssignmentPolicy',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('requestors', models.CharField(choices=[('sponsors', "The agent's sponsors"), ('owners', "The agent's owners"), ('sponsors_and_owners', 'Sponsors and owners')], default='sponsors_and_owners', max_length=30)),
                    ('approver_kind', models.CharField(choices=[('none', 'No approval'), ('named', 'Named people'), ('global_administrators', 'Global Administrators'), ('workspace_owners', "The workspace's owners")], default='workspace_owners', max_length=30)),
                    ('second_approver_kind', models.CharField(choices=[('none', 'No approval'), ('named', 'Named people'), ('global_administrators', 'Global Administrators'), ('workspace_owners', "The workspace's owners")], default='none', max_length=30)),
                    ('duration_kind', models.CharField(choices=[('fixed_end', 'Until a fixed date'), ('days', 'A number of days'), ('hours', 'A number of hours')], default='days', max_length=20)),
                    ('duration_value', models.PositiveIntegerField(default=30, help_text='Days or hours, by the duration kind.')),
                    ('fixed_end', models.DateTimeField(blank=True, null=True)),
                    ('max_hours', models.PositiveIntegerField(default=2160, help_text='No assignment lasts longer in total.')),
                    ('allow_extension', models.BooleanField(default=True)),
                    ('extension_needs_approval', models.BooleanField(default=True)),
                    ('justification_required', models.BooleanField(default=True)),
                    ('request_ttl_days', models.PositiveIntegerField(default=7, help_text='Undecided requests expire after this.')),
                    ('approvers', models.ManyToManyField(blank=True, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('package', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='policy', to='access.accesspackage')),
                    ('second_approvers', models.ManyToManyField(blank=True, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_assignmentpolicy',
                },
            ),
            migrations.AddConstraint(
                model_name='accesspackage',
                constraint=models.UniqueConstraint(fields=('workspace', 'name'), name='package_unique_name'),
            ),
            migrations.AddIndex(
                model_name='assignment',
                index=models.Index(fields=['status', 'expires_at'], name='governance__status_820beb_idx'),
            ),
            migrations.AddIndex(
                model_name='assignment',
                index=models.Index(fields=['agent', 'status'], name='governance__agent_i_1dcb57_idx'),
            ),
            migrations.AddIndex(
                model_name='assignment',
                index=models.Index(fields=['status', 'request_expires_at'], name='governance__status_4ac27e_idx'),
            ),
            migrations.AddConstraint(
                model_name='assignment',
                constraint=models.CheckConstraint(condition=models.Q(models.Q(('status', 'active'), _negated=True), models.Q(('expires_at__isnull', False), ('starts_at__isnull', False)), _connector='OR'), name='assignment_active_has_an_end'),
            ),
            migrations.AddConstraint(
                model_name='assignment',
                constraint=models.CheckConstraint(condition=models.Q(('expires_at__isnull', True), ('expires_at__gt', models.F('starts_at')), _connector='OR'), name='assignment_starts_before_it_ends'),
            ),
            migrations.AddConstraint(
                model_name='assignment',
                constraint=models.UniqueConstraint(condition=models.Q(('status__in', ['pending', 'active'])), fields=('package', 'agent'), name='assignment_one_open_per_package'),
            ),
            migrations.AddConstraint(
                model_name='assignmentpolicy',
                constraint=models.CheckConstraint(condition=models.Q(models.Q(('duration_kind', 'fixed_end'), _negated=True), ('fixed_end__isnull', False), _connector='OR'), name='policy_fixed_end_given'),
            ),
            migrations.AddConstraint(
                model_name='assignmentpolicy',
                constraint=models.CheckConstraint(condition=models.Q(('max_hours__gt', 0)), name='policy_max_positive'),
            ),
        ]),
    ]
