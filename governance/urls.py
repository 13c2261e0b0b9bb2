from django.urls import path

from governance import views

urlpatterns = [
    path("approvals/", views.approval_list, name="approval-list"),
    path("approvals/<int:request_id>/", views.approval_detail, name="approval-detail"),
    path("approvals/<int:request_id>/approve/", views.approval_approve, name="approval-approve"),
    path("approvals/<int:request_id>/deny/", views.approval_deny, name="approval-deny"),
    path("approvals/<int:request_id>/withdraw/", views.approval_withdraw, name="approval-withdraw"),
    path("approvals/new/<int:agent_id>/", views.approval_create, name="approval-create"),
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
    path("reviews/", views.review_list, name="review-list"),
    path("reviews/new/", views.review_create, name="review-create"),
    path("reviews/<int:campaign_id>/", views.review_detail, name="review-detail"),
    path("reviews/<int:campaign_id>/review/", views.review_mine, name="review-mine"),
    path("reviews/<int:campaign_id>/accept/", views.review_accept, name="review-accept"),
    path("reviews/<int:campaign_id>/close/", views.review_close, name="review-close"),
    path("reviews/<int:campaign_id>/results/", views.review_results, name="review-results"),
    path("reviews/<int:campaign_id>/results.csv", views.review_results_csv, name="review-results-csv"),
    path("reviews/items/<int:item_id>/decide/", views.review_decide, name="review-decide"),
]
