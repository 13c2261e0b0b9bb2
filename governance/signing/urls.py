"""The JWKS, mounted under ``/oauth/`` (its address is the metadata's ``jwks_uri``)."""

from django.urls import path

from governance.signing import views

urlpatterns = [
    path("jwks/", views.jwks, name="oauth-jwks"),
]
