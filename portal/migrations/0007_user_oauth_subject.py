import uuid

from django.db import migrations, models


def fill(apps, schema_editor):
    User = apps.get_model("portal", "User")
    for pk in User.objects.values_list("pk", flat=True):
        User.objects.filter(pk=pk).update(oauth_subject=uuid.uuid4())


class Migration(migrations.Migration):
    dependencies = [("portal", "0006_scheduler_heartbeat")]

    operations = [
        migrations.AddField(model_name="user", name="oauth_subject",
                            field=models.UUIDField(null=True, editable=False)),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user", name="oauth_subject",
            field=models.UUIDField(default=uuid.uuid4, unique=True, editable=False,
                                   help_text="The stable, opaque `sub` of this person's tokens (never the username).")),
    ]
