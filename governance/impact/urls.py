from django.urls import path

from governance.impact import pages

urlpatterns = [
    path("blast-radius/agents/<int:agent_id>/credentials/<str:kind>/<int:credential_id>/revoke/",
         pages.credential_revoke_confirm, name="credential-revoke-confirm"),
    path("blast-radius/assignments/<int:assignment_id>/end/", pages.assignment_end_confirm,
         name="assignment-end-confirm"),
    path("access-packages/<int:package_id>/remove/", pages.package_remove_confirm, name="package-remove"),
]
