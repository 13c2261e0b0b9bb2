"""Reads of the signing keys, restricted to who may see them (docs/oauth.md, "Signing keys")."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db.models import QuerySet
from django.http import Http404

from governance.signing import rotation
from governance.signing.models import SigningKey


def signing_keys_visible_to(user) -> QuerySet[SigningKey]:
    """Every key (public data only is shown) for the roles that read security configuration; none otherwise."""
    if not rotation.can_view_signing_keys(user):
        return SigningKey.objects.none()
    return SigningKey.objects.select_related("created_by").defer("private_key").order_by("-created_at", "-pk")


def signing_key_get(user, key_id: int) -> SigningKey:
    """One key the user may see, or a 404."""
    key = signing_keys_visible_to(user).filter(pk=key_id).first()
    if key is None:
        raise Http404("No such signing key.")
    return key


def with_live_tokens(signing_keys: Sequence[SigningKey]) -> None:
    """Set ``live_tokens`` on each key (None when unknown): live tokens it may have signed, in one query."""
    counts = rotation.live_token_counts(signing_keys) or {}
    for key in signing_keys:
        key.live_tokens = counts.get(key.pk)


def publish_period() -> str:
    """``SIGNING_KEY_PUBLISH_SECONDS`` in words ("24 hours", "90 seconds")."""
    seconds = settings.SIGNING_KEY_PUBLISH_SECONDS
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
