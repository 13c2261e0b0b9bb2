"""Access package and assignment pages, mounted under ``/governance/``."""

from django.urls import path

from governance.access import views

urlpatterns = [
    path("access-packages/", views.package_list, name="package-list"),
    path("access-packages/new/", views.package_edit, name="package-create"),
    path("access-packages/expiring/", views.expiring_soon, name="assignments-expiring"),
    path("access-packages/<int:package_id>/", views.package_detail, name="package-detail"),
    path("access-packages/<int:package_id>/edit/", views.package_edit, name="package-edit"),
    path("assignments/<int:assignment_id>/", views.assignment_detail, name="assignment-detail"),
    path("assignments/<int:assignment_id>/approve/", views.assignment_approve, name="assignment-approve"),
    path("assignments/<int:assignment_id>/deny/", views.assignment_deny, name="assignment-deny"),
    path("assignments/<int:assignment_id>/extend/", views.assignment_extend, name="assignment-extend"),
    path("assignments/<int:assignment_id>/revoke/", views.assignment_revoke, name="assignment-revoke"),
]
