"""Access review pages, mounted under ``/governance/``."""

from django.urls import path

from governance.reviews import views

urlpatterns = [
    path("reviews/", views.review_list, name="review-list"),
    path("reviews/new/", views.review_create, name="review-create"),
    path("reviews/<int:campaign_id>/", views.review_detail, name="review-detail"),
    path("reviews/<int:campaign_id>/review/", views.review_mine, name="review-mine"),
    path("reviews/<int:campaign_id>/accept/", views.review_accept, name="review-accept"),
    path("reviews/<int:campaign_id>/close/", views.review_close, name="review-close"),
    path("reviews/<int:campaign_id>/results/", views.review_results, name="review-results"),
    path("reviews/<int:campaign_id>/results.csv", views.review_results_csv, name="review-results-csv"),
    path("reviews/items/<int:item_id>/decide/", views.review_decide, name="review-decide"),
    path("reviews/items/<int:item_id>/permissions/", views.review_permissions_decide, name="review-permissions"),
]
