from django.apps import AppConfig


class ConditionalAccessConfig(AppConfig):
    """Conditional-access policies for agents and the decision point that evaluates them."""

    name = "governance.conditional_access"
    label = "conditional_access"
    verbose_name = "Conditional access"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.conditional_access import api, services  # noqa: F401  (jobs and API routes register on import)

        agents.attribute_keys_in_rules.connect(lambda **_: services.attribute_keys_in_rules(), weak=False,
                                               dispatch_uid="conditional_access.attribute_keys_in_rules")
