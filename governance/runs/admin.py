"""Read-only admin for sessions, runs and feedback: changes go through the run services."""

from django.contrib import admin

from governance.runs.models import Feedback, Run, Session
from portal.admin import ReadOnlyAdmin


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("id", "agent", "trigger", "status", "started_by", "created_at", "finished_at")
    list_filter = ("status", "trigger")


@admin.register(Session)
class SessionAdmin(ReadOnlyAdmin):
    list_display = ("id", "agent", "opened_by", "title", "created_at")


@admin.register(Feedback)
class FeedbackAdmin(ReadOnlyAdmin):
    list_display = ("run", "agent", "author", "rating", "created_at")
