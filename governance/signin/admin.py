"""Read-only admin for the authorization server's records; token and secret hashes are never shown."""

from django.contrib import admin

from governance.signin.models import AccessToken, ResourceServer, SignIn
from portal.admin import ReadOnlyAdmin


@admin.register(AccessToken)
class AccessTokenAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "agent", "grant_type", "issued_at", "expires_at", "revoked_at")
    exclude = ("token_hash",)


@admin.register(ResourceServer)
class ResourceServerAdmin(ReadOnlyAdmin):
    list_display = ("name", "client_id", "created_at", "revoked_at")
    exclude = ("secret_hash",)


@admin.register(SignIn)
class SignInAdmin(ReadOnlyAdmin):
    list_display = ("at", "client_id", "agent", "grant_type", "outcome")
    list_filter = ("outcome",)

