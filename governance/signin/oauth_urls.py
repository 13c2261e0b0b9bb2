from django.urls import path

from governance.signin import oauth

urlpatterns = [
    path("token/", oauth.token, name="oauth-token"),
    path("introspect/", oauth.introspect, name="oauth-introspect"),
    path("revoke/", oauth.revoke, name="oauth-revoke"),
]
