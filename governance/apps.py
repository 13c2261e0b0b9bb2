from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Approvals, access packages, reviews, conditional access, risk and their jobs (DESIGN §2)."""

    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import api, approvals, demo  # noqa: F401  (hooks, jobs, API routes, demo data)
