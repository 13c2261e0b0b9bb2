"""Tables (and their named indexes) take this app's name, once every app has let go of the models."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('governance', '0007_models_moved_to_sub_apps'),
        ('approvals', '0001_initial'),
    ]

    operations = [
        migrations.RenameIndex(
            model_name='approvalrequest',
            new_name='approvals_a_status_f7bf6f_idx',
            old_name='governance__status_04cd1f_idx',
        ),
        migrations.AlterModelTable(
            name='approvalrequest',
            table=None,
        ),
    ]
