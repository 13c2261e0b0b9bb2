"""R30 (docs/sponsorship.md): the sponsors named before sponsorship had to be accepted count as accepted, confirmed
now, and are due to confirm again ``SPONSOR_ATTESTATION_DAYS`` from now."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone


def existing_sponsors_accepted(apps, schema_editor):
    Sponsorship = apps.get_model("agents", "Sponsorship")
    AgentUserObjectPermission = apps.get_model("agents", "AgentUserObjectPermission")
    now = timezone.now()
    due = now + timedelta(days=settings.SPONSOR_ATTESTATION_DAYS)
    rows = (AgentUserObjectPermission.objects.filter(permission__codename="sponsor_agent")
            .values_list("content_object_id", "user_id").iterator(chunk_size=5000))
    batch = []
    for agent_id, user_id in rows:
        batch.append(Sponsorship(agent_id=agent_id, user_id=user_id, state="accepted", requested_at=now,
                                 decided_at=now, attested_at=now, due_at=due))
        if len(batch) >= 5000:
            Sponsorship.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    Sponsorship.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("agents", "0011_sponsorship"),
    ]

    operations = [
        migrations.RunPython(existing_sponsors_accepted, migrations.RunPython.noop),
    ]
