"""A help text without a rule code (the rules are described in docs/design.md)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0003_notifications'),
    ]

    operations = [
        migrations.AlterField(
            model_name='directoryrole',
            name='privileged',
            field=models.BooleanField(default=False, help_text='Privileged roles can never be held by an agent.'),
        ),
    ]
