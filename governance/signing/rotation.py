"""Rotating the signing keys with overlap (R25; docs/oauth.md, "Signing keys").

A key is *published* (in the JWKS, not signing) for ``SIGNING_KEY_PUBLISH_SECONDS`` before it becomes *active*
(signing), so every resource server and every portal process has seen it before the first token it signs. The key
it replaces is *retired*: it signs nothing more but stays in the JWKS while a token it may have signed can still be
live, then is *removed* (gone from the JWKS, private half erased, row kept for the record).

"May have signed" is a window: from the key's activation to its retirement plus ``SIGNING_KEY_CACHE_SECONDS``, since
another process may keep signing with the key it cached that long. The token rows live in the authorization
server, a layer above; rotation asks through ``signals.live_tokens`` and removes nothing when nobody answers.

The job ``rotate_signing_keys`` does the routine work; the services below let Global and Security Administrators
rotate now, activate a published key at once (emergency) or retire a key. Each change writes one audit event in
its transaction, with the key's id and times but never its private half.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from governance.signing import keys, signals
from governance.signing.choices import KeyState
from governance.signing.models import SigningKey
from portal import audit, jobs, rbac
from portal.models import User

#: Directory roles that rotate, activate and retire keys.
MANAGER_ROLES = frozenset({rbac.GLOBAL_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR})
#: Directory roles that read security configuration and may see the keys' page (never a private half).
READER_ROLES = MANAGER_ROLES | {rbac.SECURITY_READER, rbac.COMPLIANCE_ADMINISTRATOR, rbac.GLOBAL_READER}

MANAGE_FORBIDDEN = "Only Global and Security Administrators manage signing keys."


def can_manage_signing_keys(user) -> bool:
    return bool(rbac.role_keys(user) & MANAGER_ROLES)


def can_view_signing_keys(user) -> bool:
    return bool(rbac.role_keys(user) & READER_ROLES)


# --- which keys may still have signed a live token -------------------------------------------------------------
def signing_window(key: SigningKey) -> tuple[datetime, datetime | None] | None:
    """When ``key`` may have signed: None if it never became active; the end is None while it still signs."""
    if key.activated_at is None:
        return None
    cache = timedelta(seconds=settings.SIGNING_KEY_CACHE_SECONDS)
    # A request that read its clock just before this process saw the activation can carry a slightly earlier
    # ``issued_at``; the margin at the start only keeps a key a little longer.
    start = key.activated_at - cache
    return start, (key.retired_at + cache if key.retired_at is not None else None)


def live_token_counts(signing_keys, now: datetime | None = None) -> dict[int, int] | None:
    """``{key id: tokens, revoked or not, that it may have signed and that have not expired}`` in one question to
    the authorization server; None when nobody answers (then no key may be removed)."""
    now = now or timezone.now()
    windows = [(key.pk, *window) for key in signing_keys if (window := signing_window(key)) is not None]
    if not signals.live_tokens.has_listeners(SigningKey):
        return None
    counts = {key.pk: 0 for key in signing_keys}
    for _receiver, answer in signals.live_tokens.send(sender=SigningKey, windows=windows, now=now):
        for key_id, count in (answer or {}).items():
            counts[key_id] = counts.get(key_id, 0) + count
    return counts


# --- changes ---------------------------------------------------------------------------------------------------
def _snapshot(key: SigningKey) -> dict:
    """What the audit trail keeps of a key: its id, state and times; never the private half."""
    return {"kid": key.kid, "state": key.state, "created_at": key.created_at, "activated_at": key.activated_at,
            "retired_at": key.retired_at, "removed_at": key.removed_at}


def _after_commit_forget() -> None:
    keys.forget()
    transaction.on_commit(keys.forget)


def _publish(actor: User | None, now: datetime) -> SigningKey | None:
    """A new published key, or None when another worker published one first (one waits at a time)."""
    try:
        with transaction.atomic():
            return keys.new_key(actor=actor, state=KeyState.PUBLISHED, now=now)
    except IntegrityError:
        return None


def _activate(key: SigningKey, now: datetime) -> SigningKey | None:
    """Make ``key`` (locked, published) the signing key; the active one, if any, retires. Returns the retired key."""
    if not keys.can_decrypt(key.private_key):
        raise ValidationError(f"Key {key.kid} cannot be opened with the current secret; it cannot sign.")
    current = SigningKey.objects.select_for_update().filter(state=KeyState.ACTIVE).exclude(pk=key.pk).first()
    if current is not None:
        current.state, current.retired_at = KeyState.RETIRED, now
        current.save(update_fields=["state", "retired_at"])
    key.state, key.activated_at = KeyState.ACTIVE, now
    key.save(update_fields=["state", "activated_at"])
    return current


def _lock_keys() -> None:
    """Lock every key still in the JWKS, in one order (by id) for the job and every service, so two changes at
    once wait for each other instead of deadlocking."""
    list(SigningKey.objects.select_for_update().filter(
        state__in=(KeyState.PUBLISHED, KeyState.ACTIVE, KeyState.RETIRED)).order_by("pk").values_list("pk"))


def _locked(key: SigningKey) -> SigningKey:
    _lock_keys()
    return SigningKey.objects.select_for_update().get(pk=key.pk)


@transaction.atomic
def signing_key_rotate(*, actor: User) -> SigningKey:
    """Publish a new key now; the job activates it once it has been published for ``SIGNING_KEY_PUBLISH_SECONDS``
    (an administrator may activate it sooner). Refused while another key is already waiting."""
    rbac.require(can_manage_signing_keys(actor), MANAGE_FORBIDDEN)
    _lock_keys()
    waiting = SigningKey.objects.select_for_update().filter(state=KeyState.PUBLISHED).first()
    if waiting is not None:
        raise ValidationError(f"Key {waiting.kid} is already waiting to sign; activate or retire it first.")
    key = _publish(actor, timezone.now())
    if key is None:
        raise ValidationError("Another key was published at the same moment; reload the page.")
    audit.record(actor=actor, action="signing_key.publish", target=key, after=_snapshot(key))
    _after_commit_forget()
    return key


@transaction.atomic
def signing_key_activate(*, actor: User, key: SigningKey) -> SigningKey:
    """Emergency: make a published key sign at once; the active key retires (its tokens keep verifying)."""
    rbac.require(can_manage_signing_keys(actor), MANAGE_FORBIDDEN)
    key = _locked(key)
    if key.state != KeyState.PUBLISHED:
        raise ValidationError(f"Only a published key can be activated; key {key.kid} is {key.get_state_display()}.")
    before = _snapshot(key)
    retired = _activate(key, timezone.now())
    audit.record(actor=actor, action="signing_key.activate", target=key, before=before,
                 after={**_snapshot(key), "retired": retired.kid if retired else None})
    _after_commit_forget()
    return key


@transaction.atomic
def signing_key_retire(*, actor: User, key: SigningKey) -> SigningKey:
    """Retire the active key (the newest published key takes over, or a new one made now) or a published one
    (it will never sign). A retired key stays in the JWKS until no token it may have signed is live."""
    rbac.require(can_manage_signing_keys(actor), MANAGE_FORBIDDEN)
    key = _locked(key)
    now = timezone.now()
    before = _snapshot(key)
    successor = None
    if key.state == KeyState.ACTIVE:
        successor = (SigningKey.objects.select_for_update().filter(state=KeyState.PUBLISHED)
                     .order_by("-created_at", "-pk").first())
        if successor is None or not keys.can_decrypt(successor.private_key):
            if successor is not None:  # it could never sign: retire it too, a fresh key takes over
                successor.state, successor.retired_at = KeyState.RETIRED, now
                successor.save(update_fields=["state", "retired_at"])
            successor = keys.new_key(actor=actor, state=KeyState.PUBLISHED, now=now)
        _activate(successor, now)
        key.refresh_from_db()
    elif key.state == KeyState.PUBLISHED:
        key.state, key.retired_at = KeyState.RETIRED, now
        key.save(update_fields=["state", "retired_at"])
    else:
        raise ValidationError(f"Key {key.kid} is already {key.get_state_display().lower()}.")
    audit.record(actor=actor, action="signing_key.retire", target=key, before=before,
                 after={**_snapshot(key), "successor": successor.kid if successor else None})
    _after_commit_forget()
    return key


# --- the job -------------------------------------------------------------------------------------------------------
def _remove(key: SigningKey, now: datetime) -> None:
    before = _snapshot(key)
    key.state, key.private_key, key.removed_at = KeyState.REMOVED, b"", now
    key.save(update_fields=["state", "private_key", "removed_at"])
    audit.record(actor=None, action="signing_key.remove", target=key, before=before,
                 after={**_snapshot(key), "reason": "no token it may have signed is live"})


@jobs.register("rotate_signing_keys", "Publish, activate, retire and remove the keys that sign access tokens.")
def rotate_signing_keys(now: datetime | None = None) -> dict:
    """The routine rotation (docs/oauth.md, "Signing keys"); idempotent and safe on two workers at once: the keys
    are taken with ``SELECT … FOR UPDATE`` and the schema allows one active and one waiting key, so a worker that
    lost a race to create one finds it made and does nothing."""
    now = now or timezone.now()
    counts = {"unusable_removed": 0, "created": 0, "published": 0, "activated": 0, "removed": 0, "retired_kept": 0}
    with transaction.atomic():
        counts["unusable_removed"] = keys.remove_unusable(now=now)
        current = {key.state: key for key in SigningKey.objects.select_for_update()
                   .filter(state__in=(KeyState.ACTIVE, KeyState.PUBLISHED)).order_by("created_at", "pk")}
        active, waiting = current.get(KeyState.ACTIVE), current.get(KeyState.PUBLISHED)
        if active is None:
            if waiting is not None:  # nothing signs: the key already in the JWKS takes over at once
                _activate(waiting, now)
                audit.record(actor=None, action="signing_key.activate", target=waiting,
                             after={**_snapshot(waiting), "reason": "no key was signing"})
                counts["activated"] += 1
            else:
                try:
                    with transaction.atomic():
                        key = keys.new_key(state=KeyState.ACTIVE, now=now)
                except IntegrityError:  # another worker made it
                    key = None
                if key is not None:
                    audit.record(actor=None, action="signing_key.create", target=key,
                                 after={**_snapshot(key), "reason": "no key was signing"})
                    counts["created"] += 1
        elif waiting is None:
            if active.activated_at is None or active.activated_at <= now - timedelta(
                    days=settings.SIGNING_KEY_ROTATION_DAYS):
                key = _publish(None, now)
                if key is not None:
                    audit.record(actor=None, action="signing_key.publish", target=key,
                                 after={**_snapshot(key), "reason": "the active key is due for rotation"})
                    counts["published"] += 1
        elif waiting.created_at <= now - timedelta(seconds=settings.SIGNING_KEY_PUBLISH_SECONDS):
            before = _snapshot(waiting)
            retired = _activate(waiting, now)
            audit.record(actor=None, action="signing_key.activate", target=waiting, before=before,
                         after={**_snapshot(waiting), "retired": retired.kid if retired else None})
            counts["activated"] += 1

        retired_keys = list(SigningKey.objects.select_for_update().filter(state=KeyState.RETIRED)
                            .order_by("retired_at", "pk"))
        live = live_token_counts(retired_keys, now) if retired_keys else {}
        cache = timedelta(seconds=settings.SIGNING_KEY_CACHE_SECONDS)
        for key in retired_keys:
            # Another process may still sign with a key it cached, up to the cache time after the retirement.
            if live is None or live.get(key.pk, 0) or (key.retired_at or now) + cache > now:
                counts["retired_kept"] += 1
                continue
            _remove(key, now)
            counts["removed"] += 1
        if any(counts[name] for name in ("unusable_removed", "created", "published", "activated", "removed")):
            _after_commit_forget()
    return counts
