"""Agents set up before schedules existed get the schedule their blueprint's triggers give (DefaultPollPeriodSeconds
> 0: scheduled; 0: on demand), as new agents do (``registry.poll_period``)."""

from django.db import migrations


def schedule_from_triggers(apps, schema_editor):
    Agent = apps.get_model("agents", "Agent")
    Blueprint = apps.get_model("agents", "Blueprint")
    for blueprint in Blueprint.objects.exclude(triggers=[]).only("id", "triggers"):
        periods = [t.get("DefaultPollPeriodSeconds") or 0 for t in blueprint.triggers or [] if isinstance(t, dict)]
        positive = [p for p in periods if isinstance(p, int) and p > 0]
        if positive:
            Agent.objects.filter(blueprint_id=blueprint.pk, schedule_period_seconds=0).update(
                schedule_period_seconds=min(positive))


class Migration(migrations.Migration):
    dependencies = [("agents", "0004_schedules_feedback_executors")]

    operations = [migrations.RunPython(schedule_from_triggers, migrations.RunPython.noop)]
