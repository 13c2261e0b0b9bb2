"""The signing-keys page, mounted under ``/governance/`` (docs/oauth.md, "Signing keys")."""

from django.urls import path

from governance.signing import views

urlpatterns = [
    path("signing-keys/", views.signing_key_list, name="signing-key-list"),
    path("signing-keys/rotate/", views.signing_key_rotate, name="signing-key-rotate"),
    path("signing-keys/<int:key_id>/activate/", views.signing_key_activate, name="signing-key-activate"),
    path("signing-keys/<int:key_id>/retire/", views.signing_key_retire, name="signing-key-retire"),
]
