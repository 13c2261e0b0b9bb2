"""Client registration (RFC 7591, RFC 7592) and the registered-clients pages, mounted under ``/oauth/``."""

from django.urls import path

from governance.oauth import client_views

urlpatterns = [
    path("register/", client_views.register, name="oauth-register"),
    path("register/<str:client_id>/", client_views.registration_client, name="oauth-register-client"),
    path("clients/", client_views.client_list, name="oauth-client-list"),
    path("clients/<int:pk>/", client_views.client_detail, name="oauth-client-detail"),
    path("clients/<int:pk>/approve/", client_views.client_approve, name="oauth-client-approve"),
    path("clients/<int:pk>/deny/", client_views.client_deny, name="oauth-client-deny"),
    path("clients/<int:pk>/retire/", client_views.client_retire, name="oauth-client-retire"),
]
