from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal: directory, workspaces, audit, jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal import jobs  # noqa: F401  (registers the portal's own jobs)
