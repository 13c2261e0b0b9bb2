"""Replay pages, mounted under ``/governance/`` next to the policies."""

from django.urls import path

from governance.replay import views

urlpatterns = [
    path("policies/replay/", views.policy_replay, name="policy-replay-preview"),
    path("policies/<int:policy_id>/replay/", views.policy_replay, name="policy-replay"),
    path("policies/<int:policy_id>/turn-on/", views.policy_turn_on, name="policy-turn-on"),
]
