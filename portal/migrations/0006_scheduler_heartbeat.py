"""Beat's last tick, kept where every web process can read it (docs/design.md, Faults)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0005_organisation_read_scope'),
    ]

    operations = [
        migrations.CreateModel(
            name='SchedulerHeartbeat',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(default='beat', max_length=60, unique=True)),
                ('ticked_at', models.DateTimeField()),
                ('worker', models.CharField(blank=True, max_length=200)),
            ],
        ),
    ]
