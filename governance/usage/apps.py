from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Usage of agents, summarised once: the daily rollup of the sign-in log, its job, and the one definition of
    "used" that every page, finding, review and detection reads (docs/design.md, "Usage")."""

    name = "governance.usage"
    label = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.usage import rollup, selectors  # noqa: F401  (the rollup job registers on import)

        agents.last_used.connect(lambda agent_ids, **_: selectors.last_used(agent_ids),
                                 weak=False, dispatch_uid="usage.last_used")
