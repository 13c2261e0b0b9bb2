"""Sessions and runs, and an agent's schedule and memory (their pages live beside the agent's)."""

from django.urls import path

from governance.runs import views as run_views

urlpatterns = [
    path("sessions/", run_views.session_list, name="session-list"),
    path("sessions/new/", run_views.session_create, name="session-create"),
    path("sessions/<int:session_id>/", run_views.session_detail, name="session-detail"),
    path("sessions/<int:session_id>/run/", run_views.run_start, name="run-start"),
    path("runs/<int:run_id>/", run_views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/status/", run_views.run_status, name="run-status"),
    path("runs/<int:run_id>/cancel/", run_views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/feedback/", run_views.run_feedback, name="run-feedback"),
    path("runs/<int:run_id>/apply/<int:index>/", run_views.run_apply, name="run-apply"),
    path("runs/<int:run_id>/apply/", run_views.run_apply_many, name="run-apply-many"),
    path("agents/<int:agent_id>/schedule/", run_views.agent_schedule, name="agent-schedule"),
    path("agents/<int:agent_id>/feedback/<int:feedback_id>/delete/", run_views.agent_feedback_delete,
         name="agent-feedback-delete"),
]
