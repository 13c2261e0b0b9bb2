from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """A partner agent that touches Microsoft product data waits for a Global Administrator's approval of its
    exact permission set."""

    name = "governance.approvals"
    label = "approvals"
    verbose_name = "Partner approvals"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.approvals import api, services  # noqa: F401  (jobs and API routes register on import)

        agents.initial_status.connect(lambda blueprint, workspace, **_: services.initial_status(blueprint, workspace),
                                      weak=False, dispatch_uid="approvals.initial_status")
        agents.agent_created.connect(lambda actor, created, **_: services.open_requests(actor, created),
                                     weak=False, dispatch_uid="approvals.agent_created")
        agents.activation_problems.connect(lambda agent, blueprint, **_: services.activation_problem(agent, blueprint),
                                           weak=False, dispatch_uid="approvals.activation_problems")
        agents.setup_notices.connect(lambda blueprint, **_: services.setup_notice(blueprint),
                                     weak=False, dispatch_uid="approvals.setup_notices")
        agents.status_notes.connect(lambda agent, **_: services.status_note(agent),
                                    weak=False, dispatch_uid="approvals.status_notes")
