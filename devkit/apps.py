from django.apps import AppConfig


class DevkitConfig(AppConfig):
    """Development tools: ``manage.py seed_demo`` (demo data) and ``manage.py bench`` (benchmarks). Only the
    management commands live here at import time; the demo steps and scenarios load when a command runs, never in
    a web or worker process."""

    name = "devkit"
    default_auto_field = "django.db.models.BigAutoField"
