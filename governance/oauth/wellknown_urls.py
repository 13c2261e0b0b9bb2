"""The well-known documents, mounted at ``/.well-known/`` (no trailing slash: clients fetch them as they are)."""

urlpatterns: list = []
