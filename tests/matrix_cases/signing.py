"""Permission-matrix cases for the JWKS and the signing-keys page (docs/oauth.md, "Signing keys").

The JWKS is public. The page is for Global and Security Administrators (the matrix's global_admin and
inherited_owner) and, read-only, for security readers; workspace owners and contributors get 403.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _active(w):
    from governance.signing import rotation
    from governance.signing.choices import KeyState
    from governance.signing.models import SigningKey

    rotation.rotate_signing_keys()
    return SigningKey.objects.get(state=KeyState.ACTIVE)


def _published(w):
    from governance.signing import keys
    from governance.signing.choices import KeyState
    from governance.signing.models import SigningKey

    _active(w)
    return SigningKey.objects.filter(state=KeyState.PUBLISHED).first() or keys.new_key()


ADMINS_READ = expect(LOGIN, 403, 403, 200, 200, 403)
ADMINS_WRITE = expect(LOGIN, 403, 403, 302, 302, 403)

CASES = [
    Case("oauth-jwks", "GET", lambda w: reverse("oauth-jwks"), expect(200, 200, 200, 200, 200, 200)),
    Case("signing-key-list", "GET", lambda w: reverse("signing-key-list"), ADMINS_READ),
    Case("signing-key-rotate", "GET", lambda w: reverse("signing-key-rotate"), ADMINS_READ),
    Case("signing-key-rotate", "POST", lambda w: reverse("signing-key-rotate"), ADMINS_WRITE),
    Case("signing-key-activate", "GET", lambda w: reverse("signing-key-activate", args=[_published(w).pk]),
         ADMINS_READ),
    Case("signing-key-activate", "POST", lambda w: reverse("signing-key-activate", args=[_published(w).pk]),
         ADMINS_WRITE),
    Case("signing-key-retire", "GET", lambda w: reverse("signing-key-retire", args=[_active(w).pk]), ADMINS_READ),
    Case("signing-key-retire", "POST", lambda w: reverse("signing-key-retire", args=[_active(w).pk]), ADMINS_WRITE),
]
