"""The sign-in pages, mounted under ``/governance/``: the sign-in log, personal tokens and resource servers.
The OAuth endpoints themselves are in ``oauth_urls`` (mounted at ``/oauth/``)."""

from django.urls import path

from governance.signin import views

urlpatterns = [
    path("sign-ins/", views.signin_list, name="signin-list"),
    path("sign-ins/export/", views.signin_export, name="signin-export"),
    path("tokens/", views.personal_token, name="personal-token"),
    path("tokens/resource-servers/", views.resource_server_list, name="resource-server-list"),
    path("tokens/resource-servers/<int:server_id>/revoke/", views.resource_server_revoke,
         name="resource-server-revoke"),
    path("resource-servers/agent/<int:agent_id>/", views.agent_resource, name="agent-resource"),
]
