"""Conditional-access pages, mounted under ``/governance/``."""

from django.urls import path

from governance.conditional_access import views

urlpatterns = [
    path("policies/", views.policy_list, name="policy-list"),
    path("policies/new/", views.policy_edit, name="policy-create"),
    path("policies/what-if/", views.policy_what_if, name="policy-what-if"),
    path("policies/<int:policy_id>/edit/", views.policy_edit, name="policy-edit"),
]
