from django.apps import AppConfig


class ImpactConfig(AppConfig):
    """Blast radius: what a disruptive change stops, shown before it is confirmed, and the people it tells
    (docs/blast-radius.md).

    Listed in ``INSTALLED_APPS`` ahead of ``governance.signin`` and ``governance.runs``: receivers of one signal run
    in the order the apps connect them, and the people to tell are read while the tokens and runs that stop are
    still there."""

    name = "governance.impact"
    label = "impact"
    verbose_name = "Blast radius"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.access import signals as access
        from governance.impact import api, pages, services  # noqa: F401  (api: registers its routes)

        agents.blast_radius.connect(lambda user, agents, action, **_: pages.agents_panel(user, agents, action),
                                    weak=False, dispatch_uid="impact.blast_radius")
        agents.agent_disabled.connect(
            lambda agent, retiring=False, **_: services.tell_agent_stopped(agent, retiring=retiring),
            weak=False, dispatch_uid="impact.agent_disabled")
        agents.credential_revoked.connect(
            lambda agent, credential, **_: services.tell_credential_revoked(agent, credential),
            weak=False, dispatch_uid="impact.credential_revoked")
        access.assignments_ended.connect(
            lambda assignments, reason, **_: services.tell_assignments_revoked(assignments, reason),
            weak=False, dispatch_uid="impact.assignments_ended")
