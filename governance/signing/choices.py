from django.db import models


class KeyState(models.TextChoices):
    """A key's life (docs/design.md, "Signing keys"): published (in the JWKS, not yet signing), active (signing
    new tokens; one at a time), retired (no longer signing, still published while tokens it signed may live),
    removed (gone from the JWKS, private half erased; the row stays for the record)."""

    PUBLISHED = "published", "Published (not yet signing)"
    ACTIVE = "active", "Active (signing)"
    RETIRED = "retired", "Retired (verifying only)"
    REMOVED = "removed", "Removed"
