"""Session, Run and Feedback now belong to governance.runs (its 0001 took them over): gone from this app's state
only; no table is touched."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0005_schedule_from_triggers'),
        ('governance', '0007_models_moved_to_sub_apps'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='run',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='run',
                name='cancelled_by',
            ),
            migrations.RemoveField(
                model_name='run',
                name='delegated_for',
            ),
            migrations.RemoveField(
                model_name='run',
                name='session',
            ),
            migrations.RemoveField(
                model_name='run',
                name='started_by',
            ),
            migrations.RemoveField(
                model_name='session',
                name='agent',
            ),
            migrations.RemoveField(
                model_name='session',
                name='opened_by',
            ),
            migrations.DeleteModel(
                name='Feedback',
            ),
            migrations.DeleteModel(
                name='Run',
            ),
            migrations.DeleteModel(
                name='Session',
            ),
        ]),
    ]
