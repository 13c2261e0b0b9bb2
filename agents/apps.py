from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """Agent registry (DESIGN §2): publishers, skills, blueprints, agents, identities, credentials."""

    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import api, benchmarks, demo  # noqa: F401  (register API routes, bench scenarios, demo data)
