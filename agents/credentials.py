"""Client secrets (R22's prerequisite): ≥256 random bits, stored as an HMAC-SHA-256, shown once.

A keyed fast hash fits because the secrets are random: nothing to brute-force, so a slow password hash would
only cost CPU on every token request. The key comes from ``CREDENTIAL_HASH_KEY`` (or is derived from
``SECRET_KEY``): rotating it invalidates every stored secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

SECRET_PREFIX = "aip_"


def _key() -> bytes:
    configured = getattr(settings, "CREDENTIAL_HASH_KEY", "")
    if configured:
        return configured.encode()
    return hashlib.sha256(b"agent-identity-portal/credential-hash/" + settings.SECRET_KEY.encode()).digest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)  # 32 bytes = 256 bits of entropy


def hash_secret(secret: str) -> str:
    return hmac.new(_key(), secret.encode(), hashlib.sha256).hexdigest()


def new_client_id() -> str:
    return secrets.token_hex(16)
