from django.apps import AppConfig


class SigninConfig(AppConfig):
    """The authorization server: OAuth endpoints, tokens, resource servers and the sign-in log."""

    name = "governance.signin"
    label = "signin"
    verbose_name = "Sign-in"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from agents import signals as agents
        from governance.access import signals as access
        from governance.signin import partitions, signins, tokens, views  # noqa: F401  (partitions: its job)
        from governance.signing import signals as signing

        agents.agent_disabled.connect(lambda agent, **_: tokens.revoke_for_disabled_agent(agent),
                                      weak=False, dispatch_uid="signin.agent_disabled")
        agents.detail_panels.connect(lambda user, agent, **_: views.agent_resource_panels(user, agent),
                                     weak=False, dispatch_uid="signin.agent_resource")
        signing.live_tokens.connect(lambda windows, now, **_: tokens.live_tokens_signed_in(windows, now),
                                    weak=False, dispatch_uid="signin.live_tokens")
        access.assignments_ended.connect(lambda assignments, reason, **_: tokens.revoke_tokens_carrying(
            assignments, reason), weak=False, dispatch_uid="signin.assignments_ended")
