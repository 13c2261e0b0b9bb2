from django.apps import AppConfig


class RunsConfig(AppConfig):
    """Sessions, runs and the built-in agents: an agent at work under its own governed identity."""

    name = "governance.runs"
    label = "runs"
    verbose_name = "Sessions and runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.runs import api, dashboard, ending, services, timeline, views  # noqa: F401  (register on import)
        from portal import signals as portal

        agents.detail_panels.connect(lambda user, agent, **_: views.agent_panels(user, agent),
                                     weak=False, dispatch_uid="runs.detail_panels")
        portal.dashboard_cards.connect(lambda request, **_: views.builtin_findings_card(request),
                                       weak=False, dispatch_uid="runs.dashboard_cards")
        portal.dashboard_cards.connect(lambda request, **_: dashboard.posture_card(request),
                                       weak=False, dispatch_uid="runs.posture_card")
        agents.timeline_lanes.connect(lambda user, agent, start, end, **_: timeline.lanes(user, agent, start, end),
                                      weak=False, dispatch_uid="runs.timeline_lanes")
        agents.agent_disabled.connect(lambda agent, **_: services.runs_stop_for_agent(agent),
                                      weak=False, dispatch_uid="runs.agent_disabled")
        agents.ending_counts.connect(lambda agent_ids, action, **_: ending.counts(agent_ids, action),
                                     weak=False, dispatch_uid="runs.ending_counts")
