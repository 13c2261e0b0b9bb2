from django.db import models


class ClientSource(models.TextChoices):
    STATIC = "static", "Registered by an administrator"
    DYNAMIC = "dynamic", "Dynamic registration (RFC 7591)"
    METADATA_DOCUMENT = "metadata_document", "Client ID metadata document"


class ClientApproval(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"


class AuthMethod(models.TextChoices):
    NONE = "none", "None (public client, PKCE)"
    CLIENT_SECRET_BASIC = "client_secret_basic", "Client secret (HTTP Basic)"
    CLIENT_SECRET_POST = "client_secret_post", "Client secret (form)"
