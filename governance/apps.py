from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """Approvals, access packages, reviews, conditional access, risk and their jobs (DESIGN §2)."""

    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance import (  # noqa: F401  (registries)
            access_packages,
            api,
            approvals,
            benchmarks,
            demo,
            lifecycle,
            oauth_benchmarks,
            risk,
            risk_demo,
            run_api,
            run_demo,
            run_views,
            runs,
            signins,
            tokens,
        )
