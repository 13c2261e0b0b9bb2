from django.apps import AppConfig


class OAuthConfig(AppConfig):
    """The OAuth 2.1 authorization server's edge: discovery, client registration, authorization code with consent,
    refresh tokens and the token endpoint's grants for people (R24-R27)."""

    name = "governance.oauth"
    label = "oauth"
    verbose_name = "OAuth clients and consent"
    default_auto_field = "django.db.models.BigAutoField"
