from django.apps import AppConfig


class ReplayConfig(AppConfig):
    """Conditional-access policy replay (docs/design.md, R29; docs/policy-replay.md): what a policy would have
    blocked over the sign-ins and run starts already recorded, through the decision function that issues tokens."""

    name = "governance.replay"
    label = "replay"
    verbose_name = "Policy replay"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.replay import api  # noqa: F401  (API routes register on import)
