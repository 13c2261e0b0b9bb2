from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    """The governance package is a Django app only to keep the migrations written before it was split into
    sub-apps (approvals, access, reviews, conditional_access, signin, risk, runs): databases migrated then go on from
    there. It has no models of its own."""

    name = "governance"
    default_auto_field = "django.db.models.BigAutoField"
