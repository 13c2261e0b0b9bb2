"""R25: signing keys rotate with overlap (docs/oauth.md, "Signing keys"): a new key is published before it signs,
tokens signed before a rotation verify until they expire, a retired key leaves the JWKS only after its tokens have,
the job is idempotent, and private keys are encrypted at rest and never published or audited."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import jwt
import pytest
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.db import connection, connections
from django.utils import timezone

from agents import registry
from governance.signin import tokens
from governance.signin.models import AccessToken
from governance.signing import keys, rotation
from governance.signing.choices import KeyState
from governance.signing.models import SigningKey
from portal.choices import JobStatus
from portal.models import AuditEvent, JobRun

pytestmark = pytest.mark.django_db


def _client_secret(agent) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    return credential.identity.client_id, secret


def _issue(client, client_id: str, secret: str) -> str:
    """A client-credentials token over HTTP (docs/oauth.md, "Access tokens are JWTs")."""
    response = client.post("/oauth/token/", {"grant_type": "client_credentials"},
                           HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode())
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def _kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


def _jwks(client) -> dict:
    response = client.get("/oauth/jwks/")
    assert response.status_code == 200
    return response.json()


def _verify_offline(client, token: str) -> dict:
    """What a resource server does: verify against the published JWKS with an independent library (PyJWT)."""
    key_set = jwt.PyJWKSet.from_dict(_jwks(client))
    return jwt.decode(token, key=key_set[_kid(token)].key, algorithms=["ES256"], audience=settings.PORTAL_BASE_URL,
                      issuer=settings.PORTAL_BASE_URL)


def _published_kids(client) -> set[str]:
    return {k["kid"] for k in _jwks(client)["keys"]}


def _after_publication(now=None):
    return (now or timezone.now()) + timedelta(seconds=settings.SIGNING_KEY_PUBLISH_SECONDS + 1)


# --- overlap ---------------------------------------------------------------------------------------------------
def test_r25_tokens_signed_before_a_rotation_verify_until_they_expire(client, approval_world):
    w = approval_world
    client_id, secret = _client_secret(w.agent)
    before = _issue(client, client_id, secret)
    first = SigningKey.objects.get(state=KeyState.ACTIVE)
    assert _kid(before) == first.kid

    # Rotate: publish now, the job activates after the publication period.
    published = rotation.signing_key_rotate(actor=w.ga)
    counts = rotation.rotate_signing_keys(now=_after_publication())
    assert counts["activated"] == 1
    published.refresh_from_db()
    first.refresh_from_db()
    assert published.state == KeyState.ACTIVE and first.state == KeyState.RETIRED

    after = _issue(client, client_id, secret)
    assert _kid(after) == published.kid != _kid(before)
    # Both verify offline against the JWKS, and at the portal (introspection's first step).
    assert _verify_offline(client, before)["client_id"] == client_id
    assert _verify_offline(client, after)["client_id"] == client_id
    assert tokens.claims_of(before) is not None and tokens.claims_of(after) is not None
    # ... until the old one expires.
    exp = jwt.decode(before, options={"verify_signature": False})["exp"]
    assert keys.verify(before, now=exp - 1) is not None
    assert keys.verify(before, now=exp) is None


def test_r25_a_new_published_key_is_in_the_jwks_before_it_signs(client, approval_world):
    w = approval_world
    client_id, secret = _client_secret(w.agent)
    _issue(client, client_id, secret)
    published = rotation.signing_key_rotate(actor=w.inherited)  # a Security Administrator
    assert published.state == KeyState.PUBLISHED
    assert published.kid in _published_kids(client)
    # Published but not signing: a token issued now still carries the active key's kid.
    assert _kid(_issue(client, client_id, secret)) != published.kid
    # The job waits for the publication period before it activates the key.
    assert rotation.rotate_signing_keys()["activated"] == 0
    assert _kid(_issue(client, client_id, secret)) != published.kid
    rotation.rotate_signing_keys(now=_after_publication())
    assert _kid(_issue(client, client_id, secret)) == published.kid


def test_r25_a_retired_key_leaves_the_jwks_only_after_its_tokens_expired(client, approval_world, settings):
    settings.SIGNING_KEY_PUBLISH_SECONDS = 0
    w = approval_world
    client_id, secret = _client_secret(w.agent)
    old_token = _issue(client, client_id, secret)
    old = SigningKey.objects.get(state=KeyState.ACTIVE)
    rotation.signing_key_rotate(actor=w.ga)
    rotation.rotate_signing_keys()  # publication period 0: activates at once, the old key retires now
    old.refresh_from_db()
    assert old.state == KeyState.RETIRED
    row = AccessToken.objects.get(client_id=client_id, issued_at__lte=old.retired_at)

    # Past the cache time, but the old key's token is live: it stays published (revoked tokens count too).
    AccessToken.objects.filter(pk=row.pk).update(revoked_at=timezone.now(), revoked_reason="test")
    later = old.retired_at + timedelta(seconds=settings.SIGNING_KEY_CACHE_SECONDS + 1)
    assert later < row.expires_at
    counts = rotation.rotate_signing_keys(now=later)
    assert counts["removed"] == 0 and counts["retired_kept"] == 1
    assert rotation.rotate_signing_keys(now=later)["removed"] == 0
    old.refresh_from_db()
    assert old.state == KeyState.RETIRED and old.kid in _published_kids(client)
    assert rotation.live_token_counts([old], later)[old.pk] == 1

    # Once every token it may have signed has expired, the job removes it and erases its private half.
    counts = rotation.rotate_signing_keys(now=row.expires_at + timedelta(seconds=1))
    assert counts["removed"] == 1
    old.refresh_from_db()
    assert old.state == KeyState.REMOVED and old.removed_at is not None and bytes(old.private_key) == b""
    assert old.kid not in _published_kids(client)
    assert keys.verify(old_token) is None  # nothing left to verify it with
    event = AuditEvent.objects.filter(action="signing_key.remove").get()
    assert event.actor is None and event.after["kid"] == old.kid


def test_r25_a_retired_key_is_kept_within_the_cache_time_even_without_tokens(approval_world, settings):
    settings.SIGNING_KEY_PUBLISH_SECONDS = 0
    rotation.rotate_signing_keys()
    old = SigningKey.objects.get(state=KeyState.ACTIVE)
    rotation.signing_key_rotate(actor=approval_world.ga)
    rotation.rotate_signing_keys()
    old.refresh_from_db()
    # Another process may still sign with the key it cached: no removal before the cache time has passed.
    within = old.retired_at + timedelta(seconds=settings.SIGNING_KEY_CACHE_SECONDS - 1)
    assert rotation.rotate_signing_keys(now=within)["removed"] == 0
    beyond = old.retired_at + timedelta(seconds=settings.SIGNING_KEY_CACHE_SECONDS + 1)
    assert rotation.rotate_signing_keys(now=beyond)["removed"] == 1


# --- the job ---------------------------------------------------------------------------------------------------
def _state() -> list[tuple]:
    return list(SigningKey.objects.order_by("pk").values_list("kid", "state", "activated_at", "retired_at",
                                                              "removed_at"))


def test_r25_the_job_is_idempotent(db):
    now = timezone.now()
    steps = [now, now + timedelta(days=settings.SIGNING_KEY_ROTATION_DAYS, seconds=1)]
    steps.append(_after_publication(steps[-1]))
    steps.append(steps[-1] + timedelta(days=1))
    expected = [{"created": 1}, {"published": 1}, {"activated": 1}, {"removed": 1}]
    for at, change in zip(steps, expected, strict=True):
        counts = rotation.rotate_signing_keys(now=at)
        assert {k: v for k, v in counts.items() if v and k != "retired_kept"} == change, (at, counts)
        rows, events = _state(), AuditEvent.objects.count()
        again = rotation.rotate_signing_keys(now=at)  # the same run twice changes nothing more
        assert not any(again[k] for k in ("unusable_removed", "created", "published", "activated", "removed"))
        assert _state() == rows and AuditEvent.objects.count() == events
    assert SigningKey.objects.filter(state=KeyState.ACTIVE).count() == 1
    assert SigningKey.objects.filter(state=KeyState.REMOVED).count() == 1


def test_r25_the_job_runs_through_the_command(db):
    call_command("run_governance_jobs", "--job", "rotate_signing_keys", stdout=open("/dev/null", "w"))
    run = JobRun.objects.get(job="rotate_signing_keys")
    assert run.status == JobStatus.SUCCEEDED and run.counts["created"] == 1
    call_command("run_governance_jobs", "--job", "rotate_signing_keys", stdout=open("/dev/null", "w"))
    assert JobRun.objects.filter(job="rotate_signing_keys").latest("pk").counts["created"] == 0
    assert SigningKey.objects.filter(state=KeyState.ACTIVE).count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_r25_two_workers_rotating_at_once_make_one_key(catalog, postgres):
    rotation.rotate_signing_keys()
    due = timezone.now() + timedelta(days=settings.SIGNING_KEY_ROTATION_DAYS, seconds=1)
    barrier, results, errors = threading.Barrier(2), [], []

    def worker():
        try:
            barrier.wait()
            results.append(rotation.rotate_signing_keys(now=due))
        except Exception as error:  # noqa: BLE001  (reported below)
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r["published"] for r in results) == [0, 1]
    assert SigningKey.objects.filter(state=KeyState.PUBLISHED).count() == 1
    assert SigningKey.objects.filter(state=KeyState.ACTIVE).count() == 1


# --- services --------------------------------------------------------------------------------------------------
def test_r25_only_global_and_security_administrators_change_keys(approval_world):
    w = approval_world
    rotation.rotate_signing_keys()
    active = SigningKey.objects.get(state=KeyState.ACTIVE)
    for user in (w.owner, w.contributor, w.other):
        with pytest.raises(PermissionDenied):
            rotation.signing_key_rotate(actor=user)
        with pytest.raises(PermissionDenied):
            rotation.signing_key_retire(actor=user, key=active)
    published = rotation.signing_key_rotate(actor=w.ga)
    with pytest.raises(ValidationError):  # one key waits at a time
        rotation.signing_key_rotate(actor=w.inherited)
    with pytest.raises(PermissionDenied):
        rotation.signing_key_activate(actor=w.owner, key=published)
    rotation.signing_key_activate(actor=w.inherited, key=published)
    active.refresh_from_db()
    assert active.state == KeyState.RETIRED and active.retired_at is not None
    with pytest.raises(ValidationError):
        rotation.signing_key_activate(actor=w.ga, key=active)  # a retired key never signs again


def test_r25_retiring_the_active_key_hands_over_to_the_waiting_or_a_new_key(approval_world):
    w = approval_world
    rotation.rotate_signing_keys()
    first = SigningKey.objects.get(state=KeyState.ACTIVE)
    waiting = rotation.signing_key_rotate(actor=w.ga)
    rotation.signing_key_retire(actor=w.ga, key=first)
    waiting.refresh_from_db()
    assert waiting.state == KeyState.ACTIVE
    rotation.signing_key_retire(actor=w.ga, key=waiting)  # none waiting: a new key takes over at once
    assert SigningKey.objects.filter(state=KeyState.ACTIVE).exclude(pk__in=[first.pk, waiting.pk]).count() == 1
    assert keys.sign({"x": 1}).count(".") == 2
    event = AuditEvent.objects.filter(action="signing_key.retire").latest("pk")
    assert event.actor == w.ga and event.after["successor"] not in (None, waiting.kid)
    # A published key may be retired too: it never signs.
    spare = rotation.signing_key_rotate(actor=w.ga)
    rotation.signing_key_retire(actor=w.ga, key=spare)
    spare.refresh_from_db()
    assert spare.state == KeyState.RETIRED and spare.activated_at is None
    with pytest.raises(ValidationError):
        rotation.signing_key_retire(actor=w.ga, key=spare)


# --- secrecy ---------------------------------------------------------------------------------------------------
def test_r25_private_keys_are_encrypted_at_rest(client, approval_world, settings):
    w = approval_world
    rotation.rotate_signing_keys()
    published = rotation.signing_key_rotate(actor=w.ga)
    rotation.signing_key_activate(actor=w.ga, key=published)
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM signing_signingkey")
        stored = [bytes(row[0]) for row in cursor.fetchall()]
    assert len(stored) == 2
    for blob in stored:
        assert b"PRIVATE KEY" not in blob and b"-----BEGIN" not in blob
        with pytest.raises(ValueError):
            serialization.load_pem_private_key(blob, password=None)
        with pytest.raises((ValueError, TypeError)):
            serialization.load_der_private_key(blob, password=None)
        with pytest.raises(InvalidToken):  # a key from another secret does not open it
            Fernet(Fernet.generate_key()).decrypt(blob)
        # The key derived by HKDF from SECRET_KEY (SIGNING_KEY_SECRET empty) does.
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=b"agent-identity-portal signing keys").derive(settings.SECRET_KEY.encode())
        pem = Fernet(base64.urlsafe_b64encode(derived)).decrypt(blob)
        assert serialization.load_pem_private_key(pem, password=None).key_size == 256

    published_keys = _jwks(client)["keys"]
    assert published_keys and all("d" not in k for k in published_keys)
    assert all({"kid", "alg", "use", "kty", "crv", "x", "y"} <= set(k) for k in published_keys)
    trail = json.dumps([[e.before, e.after] for e in AuditEvent.objects.filter(action__startswith="signing_key")])
    assert "signing_key.publish" in set(AuditEvent.objects.values_list("action", flat=True))
    assert '"d"' not in trail and "PRIVATE" not in trail
    for blob in stored:
        assert blob.decode() not in trail and base64.b64encode(blob).decode() not in trail


def test_r25_a_changed_secret_replaces_the_keys_and_their_tokens_stop_verifying(client, approval_world, settings):
    w = approval_world
    client_id, secret = _client_secret(w.agent)
    before = _issue(client, client_id, secret)
    old = SigningKey.objects.get(state=KeyState.ACTIVE)
    settings.SIGNING_KEY_SECRET = "a new secret, after a suspected leak"
    keys.forget()
    counts = rotation.rotate_signing_keys()
    assert counts["unusable_removed"] == 1 and counts["created"] == 1
    old.refresh_from_db()
    assert old.state == KeyState.REMOVED and old.kid not in _published_kids(client)
    assert tokens.claims_of(before) is None
    after = _issue(client, client_id, secret)
    assert _kid(after) != old.kid and _verify_offline(client, after)["client_id"] == client_id


def test_r25_a_changed_secret_does_not_stop_the_token_endpoint(client, approval_world, settings):
    w = approval_world
    client_id, secret = _client_secret(w.agent)
    old = _kid(_issue(client, client_id, secret))
    settings.SIGNING_KEY_SECRET = "rotated before the job ran"
    keys.forget()
    assert _kid(_issue(client, client_id, secret)) != old  # the endpoint replaces the unusable key itself
    assert AuditEvent.objects.filter(action="signing_key.remove").count() == 1
