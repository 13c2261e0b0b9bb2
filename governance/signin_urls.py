from django.urls import path

from governance import signin_views

urlpatterns = [
    path("", signin_views.signin_list, name="signin-list"),
    path("export/", signin_views.signin_export, name="signin-export"),
]
