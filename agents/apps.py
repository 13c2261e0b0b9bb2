from django.apps import AppConfig


class AgentsConfig(AppConfig):
    """The agent registry: publishers, skills, blueprints, agents, identities, credentials."""

    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the api modules register their API routes, sponsorship the attest_sponsorships job
        from agents import api, dashboard, sponsorship, sponsorship_api  # noqa: F401
        from portal import signals as portal

        portal.dashboard_cards.connect(lambda request, **_: dashboard.posture_cards(request),
                                       weak=False, dispatch_uid="agents.dashboard_cards")
