"""The sign-in pages, mounted under ``/governance/``: the sign-in log, personal tokens and resource servers.
The OAuth endpoints themselves are in ``oauth_urls`` (mounted at ``/oauth/``)."""

from django.urls import path

from governance.signin import views

urlpatterns = [
    path("sign-ins/", views.signin_list, name="signin-list"),
    path("sign-ins/export/", views.signin_export, name="signin-export"),
    path("sign-ins/exports/", views.signin_export_start, name="signin-export-start"),
    path("sign-ins/exports/<int:export_id>/", views.signin_export_job, name="signin-export-job"),
    path("sign-ins/exports/<int:export_id>/download/", views.signin_export_download, name="signin-export-download"),
    path("tokens/", views.personal_token, name="personal-token"),
    path("tokens/resource-servers/", views.resource_server_list, name="resource-server-list"),
    path("tokens/resource-servers/<int:server_id>/revoke/", views.resource_server_revoke,
         name="resource-server-revoke"),
    path("resource-servers/agent/<int:agent_id>/", views.agent_resource, name="agent-resource"),
]
