"""The resource server, token, sign-in and risk models moved here from the governance app when governance was split into sub-apps: the tables stay as they are (state only);
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
        ('runs', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='AccessToken',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('token_hash', models.CharField(max_length=64, unique=True)),
                    ('client_id', models.CharField(max_length=64)),
                    ('actor_kind', models.CharField(choices=[('agent', 'Agent (its own identity)'), ('user_account', 'Agent running as a user account'), ('on_behalf_of', 'Agent on behalf of a user'), ('user', 'A person (token to delegate to an agent)'), ('unknown', 'Unknown client')], default='agent', max_length=20)),
                    ('grant_type', models.CharField(choices=[('client_credentials', 'Client credentials'), ('urn:ietf:params:oauth:grant-type:token-exchange', 'Token exchange'), ('portal', 'Issued to a signed-in person'), ('run', 'Issued to a run of the agent')], default='client_credentials', max_length=60)),
                    ('scopes', models.JSONField(default=list)),
                    ('issued_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('expires_at', models.DateTimeField(db_index=True)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('revoked_reason', models.CharField(blank=True, max_length=60)),
                    ('agent', models.ForeignKey(blank=True, db_index=False, help_text="Empty for a person's own token (to be exchanged by an agent).", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='access_tokens', to='agents.agent')),
                    ('parent', models.ForeignKey(blank=True, db_index=False, help_text='The subject token a token exchange started from.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='signin.accesstoken')),
                    ('run', models.ForeignKey(blank=True, db_index=False, help_text="The run this token was issued to (its reads and an executor's callback).", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='runs.run')),
                    ('subject', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_accesstoken',
                    'ordering': ['-issued_at'],
                },
            ),
            migrations.CreateModel(
                name='ResourceServer',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=150, unique=True)),
                    ('client_id', models.CharField(max_length=64, unique=True)),
                    ('secret_hash', models.CharField(max_length=64, unique=True)),
                    ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('revoked_at', models.DateTimeField(blank=True, null=True)),
                    ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'governance_resourceserver',
                    'ordering': ['name'],
                },
            ),
            migrations.CreateModel(
                name='SignIn',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('client_id', models.CharField(blank=True, max_length=64)),
                    ('actor_kind', models.CharField(choices=[('agent', 'Agent (its own identity)'), ('user_account', 'Agent running as a user account'), ('on_behalf_of', 'Agent on behalf of a user'), ('user', 'A person (token to delegate to an agent)'), ('unknown', 'Unknown client')], default='unknown', max_length=20)),
                    ('ip', models.GenericIPAddressField(blank=True, null=True)),
                    ('grant_type', models.CharField(blank=True, max_length=60)),
                    ('requested_scopes', models.JSONField(blank=True, default=list)),
                    ('granted_scopes', models.JSONField(blank=True, default=list)),
                    ('outcome', models.CharField(choices=[('success', 'Success'), ('failure', 'Failure'), ('blocked', 'Blocked by conditional access')], max_length=10)),
                    ('error', models.CharField(blank=True, max_length=40)),
                    ('reason', models.CharField(blank=True, max_length=300)),
                    ('policies', models.JSONField(blank=True, default=list, help_text='Each policy that applied: id, name, state, outcome, reason.')),
                    ('agent', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='sign_ins', to='agents.agent')),
                    ('subject', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ('token', models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='signin.accesstoken')),
                ],
                options={
                    'db_table': 'governance_signin',
                    'ordering': ['-at', '-pk'],
                },
            ),
            migrations.AddIndex(
                model_name='accesstoken',
                index=models.Index(fields=['agent', 'revoked_at', 'expires_at'], name='token_agent_live'),
            ),
            migrations.AddIndex(
                model_name='signin',
                index=models.Index(fields=['agent', '-at'], name='signin_agent_at'),
            ),
        ]),
    ]
