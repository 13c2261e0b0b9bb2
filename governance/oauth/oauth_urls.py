"""The OAuth endpoints, mounted at ``/oauth/`` (docs/design.md, "The authorization server")."""

from django.urls import include, path

from governance.oauth import endpoints
from governance.signin import oauth as signin_oauth

urlpatterns = [
    path("token/", endpoints.token, name="oauth-token"),
    path("introspect/", signin_oauth.introspect, name="oauth-introspect"),
    path("revoke/", endpoints.revoke, name="oauth-revoke"),
    path("", include("governance.signing.urls")),
    path("", include("governance.oauth.urls")),
    path("", include("governance.oauth.client_urls")),
]
