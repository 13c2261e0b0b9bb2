"""Attribute sets (R20, protected attributes) and the directory role that assigns protected attributes.

The Attribute Assignment Administrator role is a row of ``portal.DirectoryRole`` like the roles seeded by
portal's 0002; it is added here, beside the models it exists for. It is privileged: an agent never holds it (R4),
so no agent can assign itself a protected attribute. It carries no data rights."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


ROLE_KEY = "attribute-assignment-administrator"


def add_role(apps, schema_editor):
    apps.get_model("portal", "DirectoryRole").objects.update_or_create(key=ROLE_KEY, defaults={
        "name": "Attribute Assignment Administrator",
        "description": "Assigns, changes and removes the custom security attributes of protected attribute sets.",
        "privileged": True,
    })


def remove_role(apps, schema_editor):
    apps.get_model("portal", "DirectoryRole").objects.filter(key=ROLE_KEY).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('portal', '0002_seed_catalog'),
    ]

    operations = [
        migrations.CreateModel(
            name='AttributeSet',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=64, unique=True)),
                ('description', models.CharField(blank=True, max_length=300)),
                ('protected', models.BooleanField(default=True, help_text='Only Global and Attribute Assignment Administrators assign the attributes of a protected set.')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='AttributeDefinition',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=64, unique=True)),
                ('attribute_set', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='definitions', to='agents.attributeset')),
            ],
            options={
                'ordering': ['key'],
            },
        ),
        migrations.RunPython(add_role, remove_role),
    ]
