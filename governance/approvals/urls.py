"""Partner approval pages, mounted under ``/governance/``."""

from django.urls import path

from governance.approvals import views

urlpatterns = [
    path("approvals/", views.approval_list, name="approval-list"),
    path("approvals/<int:request_id>/", views.approval_detail, name="approval-detail"),
    path("approvals/<int:request_id>/approve/", views.approval_approve, name="approval-approve"),
    path("approvals/<int:request_id>/deny/", views.approval_deny, name="approval-deny"),
    path("approvals/<int:request_id>/withdraw/", views.approval_withdraw, name="approval-withdraw"),
    path("approvals/new/<int:agent_id>/", views.approval_create, name="approval-create"),
]
