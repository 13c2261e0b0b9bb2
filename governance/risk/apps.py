from django.apps import AppConfig


class RiskConfig(AppConfig):
    """Risk for agents: detections from the sign-in log and from failed authentication, the agent's risk level,
    administrators' decisions and automatic remediation."""

    name = "governance.risk"
    label = "risk"
    verbose_name = "Risk"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.risk import services  # noqa: F401  (registers the evaluate_risk job)
        from governance.signin import signals as signin

        agents.status_notes.connect(lambda agent, **_: services.status_note(agent),
                                    weak=False, dispatch_uid="risk.status_notes")
        signin.client_authentication_failed.connect(
            lambda agent, failures, locked_out, address="", **_: services.failed_authentication(
                agent, failures, locked_out, address),
            weak=False, dispatch_uid="risk.client_authentication_failed")
