"""Tables take this app's name, once every app has let go of the models."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('governance', '0007_models_moved_to_sub_apps'),
        ('risk', '0001_initial'),
    ]

    operations = [
        migrations.AlterModelTable(
            name='riskdetection',
            table=None,
        ),
        migrations.AlterModelTable(
            name='riskremediationpolicy',
            table=None,
        ),
    ]
