from django.apps import AppConfig


class SigningConfig(AppConfig):
    """The keys the authorization server signs its tokens with, and their rotation."""

    name = "governance.signing"
    label = "signing"
    verbose_name = "Signing keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from governance.signing import rotation  # noqa: F401  (the rotation job registers on import)
