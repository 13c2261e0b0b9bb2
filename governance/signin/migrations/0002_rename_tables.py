"""Tables (and their named indexes) take this app's name, once every app has let go of the models."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('governance', '0007_models_moved_to_sub_apps'),
        ('signin', '0001_initial'),
    ]

    operations = [
        migrations.AlterModelTable(
            name='accesstoken',
            table=None,
        ),
        migrations.AlterModelTable(
            name='resourceserver',
            table=None,
        ),
        migrations.AlterModelTable(
            name='signin',
            table=None,
        ),
    ]
