from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    """Recurring access review campaigns: reviewers decide, results are applied through the services."""

    name = "governance.reviews"
    label = "reviews"
    verbose_name = "Access reviews"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.reviews import api, dashboard, runner, selectors  # noqa: F401  (jobs, API routes register on import)
        from portal import signals as portal

        portal.header_counts.connect(lambda user, **_: selectors.header_count(user),
                                     weak=False, dispatch_uid="reviews.header_counts")
        portal.dashboard_cards.connect(lambda request, **_: dashboard.posture_card(request),
                                       weak=False, dispatch_uid="reviews.dashboard_cards")
