from django.urls import path

from governance import token_views

urlpatterns = [
    path("", token_views.personal_token, name="personal-token"),
    path("resource-servers/", token_views.resource_server_list, name="resource-server-list"),
    path("resource-servers/<int:server_id>/revoke/", token_views.resource_server_revoke,
         name="resource-server-revoke"),
]
