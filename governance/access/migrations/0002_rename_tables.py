"""Tables (and their named indexes) take this app's name, once every app has let go of the models."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('governance', '0007_models_moved_to_sub_apps'),
        ('access', '0001_initial'),
    ]

    operations = [
        migrations.RenameIndex(
            model_name='assignment',
            new_name='access_assi_status_b4dc6f_idx',
            old_name='governance__status_820beb_idx',
        ),
        migrations.RenameIndex(
            model_name='assignment',
            new_name='access_assi_agent_i_6d4711_idx',
            old_name='governance__agent_i_1dcb57_idx',
        ),
        migrations.RenameIndex(
            model_name='assignment',
            new_name='access_assi_status_0f38ca_idx',
            old_name='governance__status_4ac27e_idx',
        ),
        migrations.AlterModelTable(
            name='accesspackage',
            table=None,
        ),
        migrations.AlterModelTable(
            name='assignment',
            table=None,
        ),
        migrations.AlterModelTable(
            name='assignmentpolicy',
            table=None,
        ),
    ]
