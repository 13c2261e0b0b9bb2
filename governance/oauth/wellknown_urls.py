"""The well-known documents, mounted at ``/.well-known/`` (no trailing slash: clients fetch them as they are)."""

from django.urls import path

from governance.oauth import wellknown_views

urlpatterns = [
    path("oauth-authorization-server", wellknown_views.authorization_server, name="oauth-authorization-server"),
    path("oauth-authorization-server/<path:suffix>", wellknown_views.authorization_server,
         name="oauth-authorization-server-path"),
    path("openid-configuration", wellknown_views.openid_configuration, name="openid-configuration"),
    path("openid-configuration/<path:suffix>", wellknown_views.openid_configuration,
         name="openid-configuration-path"),
    path("oauth-protected-resource", wellknown_views.protected_resource, name="oauth-protected-resource"),
    path("oauth-protected-resource/<path:suffix>", wellknown_views.protected_resource,
         name="oauth-protected-resource-path"),
]
