from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Time-bound access packages, their assignments and the lifecycle jobs (expiry, reminders, agent expiry,
    orphans)."""

    name = "governance.access"
    label = "access"
    verbose_name = "Access packages"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.access import api, dashboard, lifecycle, services  # noqa: F401  (register on import)
        from portal import signals as portal

        portal.dashboard_cards.connect(lambda request, **_: dashboard.posture_card(request),
                                       weak=False, dispatch_uid="access.dashboard_cards")

        agents.extra_grants.connect(lambda agent, **_: services.package_grants(agent),
                                    weak=False, dispatch_uid="access.extra_grants")
        agents.agent_retired.connect(lambda agent, now, **_: services.end_for_retired_agent(agent, now),
                                     weak=False, dispatch_uid="access.agent_retired")
