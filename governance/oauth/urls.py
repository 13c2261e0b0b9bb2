"""People's OAuth pages, mounted under ``/oauth/`` (docs/oauth.md, "Authorization code, consent and refresh tokens")."""

from django.urls import path

from governance.oauth import views

urlpatterns = [
    path("authorize/", views.authorize_view, name="oauth-authorize"),
    path("connected-apps/", views.connected_apps, name="connected-apps"),
    path("connected-apps/<int:consent_id>/revoke/", views.connected_app_revoke, name="connected-app-revoke"),
]
