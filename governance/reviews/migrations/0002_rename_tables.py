"""Tables (and their named indexes) take this app's name, once every app has let go of the models."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0006_runs_moved_to_governance'),
        ('governance', '0007_models_moved_to_sub_apps'),
        ('reviews', '0001_initial'),
    ]

    operations = [
        migrations.RenameIndex(
            model_name='accessreview',
            new_name='reviews_acc_active_41a949_idx',
            old_name='governance__active_b28bc4_idx',
        ),
        migrations.RenameIndex(
            model_name='reviewinstance',
            new_name='reviews_rev_status_5a5fca_idx',
            old_name='governance__status_cc3352_idx',
        ),
        migrations.RenameIndex(
            model_name='reviewitem',
            new_name='reviews_rev_instanc_97dfd3_idx',
            old_name='governance__instanc_94293b_idx',
        ),
        migrations.RenameIndex(
            model_name='reviewitemreviewer',
            new_name='reviews_rev_reviewe_cf0f3a_idx',
            old_name='governance__reviewe_0dc850_idx',
        ),
        migrations.AlterModelTable(
            name='accessreview',
            table=None,
        ),
        migrations.AlterModelTable(
            name='reviewdecision',
            table=None,
        ),
        migrations.AlterModelTable(
            name='reviewinstance',
            table=None,
        ),
        migrations.AlterModelTable(
            name='reviewitem',
            table=None,
        ),
        migrations.AlterModelTable(
            name='reviewitemreviewer',
            table=None,
        ),
    ]
