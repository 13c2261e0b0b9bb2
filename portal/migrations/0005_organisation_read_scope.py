"""The catalog gains ``Portal.Read.All``: an agent's own token reads every workspace through the portal API instead
of only its agent's (docs/design.md, R13). Fresh databases get it from 0002's seed; this adds it to older ones."""

from django.db import migrations


def add(apps, schema_editor):
    from importlib import import_module

    description = import_module("portal.migrations.0002_seed_catalog").ORGANISATION_READ_DESCRIPTION
    apps.get_model("portal", "Permission").objects.update_or_create(
        name="Portal.Read.All", kind="application",
        defaults={"product": "portal", "description": description, "privileged": False})


class Migration(migrations.Migration):

    dependencies = [
        ("portal", "0004_privileged_help_text"),
    ]

    operations = [
        migrations.RunPython(add, migrations.RunPython.noop),
    ]
