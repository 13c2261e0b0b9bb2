from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """The agent registry: publishers, skills, blueprints, agents, identities, credentials."""

    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import api  # noqa: F401  (registers the API routes)
