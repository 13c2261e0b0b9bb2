"""Everything under ``/governance/``: each sub-app's pages, with their URL names unchanged."""

from django.urls import include, path

urlpatterns = [
    path("", include("governance.approvals.urls")),
    path("", include("governance.access.urls")),
    path("", include("governance.reviews.urls")),
    path("", include("governance.conditional_access.urls")),
    path("", include("governance.replay.urls")),
    path("", include("governance.signin.urls")),
    path("", include("governance.risk.urls")),
    path("", include("governance.signing.page_urls")),
    path("", include("governance.impact.urls")),
]
