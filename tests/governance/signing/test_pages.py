"""The JWKS URL and the signing-keys page (R25; docs/oauth.md, "Signing keys"): who sees, who changes, confirmation
before every change, 403 for forbidden actions and 404 for keys that do not exist."""

from __future__ import annotations

import pytest
from django.urls import reverse

from governance.signing import rotation
from governance.signing.choices import KeyState
from governance.signing.models import SigningKey
from portal.models import AuditEvent
from tests.factories import UserFactory, grant_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def reader(world):
    user = UserFactory(username="reader")
    grant_role(user, "security-reader")
    return user


@pytest.fixture
def active_key(db):
    rotation.rotate_signing_keys()
    return SigningKey.objects.get(state=KeyState.ACTIVE)


def test_r25_the_jwks_is_public_cacheable_json_without_private_parts(client, active_key):
    response = client.get("/oauth/jwks/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["Access-Control-Allow-Origin"] == "*"
    (key,) = response.json()["keys"]
    assert key == {**active_key.public_jwk, "kid": active_key.kid, "alg": "ES256", "use": "sig", "kty": "EC",
                   "crv": "P-256"}
    assert "d" not in key
    assert reverse("oauth-jwks") == "/oauth/jwks/"
    for method in ("post", "put", "delete"):
        assert getattr(client, method)("/oauth/jwks/").status_code == 405


def test_r25_signing_keys_page_is_for_administrators_and_security_readers(client, world, reader, active_key):
    url = reverse("signing-key-list")
    assert url == "/governance/signing-keys/"
    for user, status in ((world.ga, 200), (world.inherited, 200), (reader, 200), (world.owner, 403),
                         (world.contributor, 403), (world.other, 403)):
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == status, user.username
        if status == 200:
            assert active_key.kid in response.content.decode()
            assert b"private" not in response.content.lower().replace(b"private half", b"")
    client.logout()
    assert client.get(url)["Location"].startswith("/accounts/login/")


def test_r25_only_administrators_see_the_buttons_and_the_nav_link(client, world, reader, active_key):
    client.force_login(world.ga)
    page = client.get(reverse("signing-key-list")).content.decode()
    assert reverse("signing-key-rotate") in page and reverse("signing-key-retire", args=[active_key.pk]) in page
    assert 'href="/governance/signing-keys/"' in client.get(reverse("personal-token")).content.decode()
    client.force_login(reader)
    page = client.get(reverse("signing-key-list")).content.decode()
    assert reverse("signing-key-rotate") not in page
    assert reverse("signing-key-retire", args=[active_key.pk]) not in page
    client.force_login(world.owner)
    assert 'href="/governance/signing-keys/"' not in client.get(reverse("personal-token")).content.decode()


def test_r25_rotate_now_asks_for_confirmation_then_publishes(client, world, active_key):
    client.force_login(world.inherited)
    url = reverse("signing-key-rotate")
    confirm = client.get(url)
    assert confirm.status_code == 200 and b"Publish a new signing key?" in confirm.content
    assert b"csrfmiddlewaretoken" in confirm.content
    assert SigningKey.objects.count() == 1  # asking changed nothing
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0] == reverse("signing-key-list")
    published = SigningKey.objects.get(state=KeyState.PUBLISHED)
    assert f"Key {published.kid} published" in response.content.decode()
    assert AuditEvent.objects.filter(action="signing_key.publish", actor=world.inherited).count() == 1
    # A second rotation while one waits is refused with a message, not an error page.
    again = client.post(url, follow=True)
    assert again.status_code == 200 and b"already waiting" in again.content
    assert SigningKey.objects.filter(state=KeyState.PUBLISHED).count() == 1


def test_r25_activate_and_retire_confirm_first(client, world, active_key):
    client.force_login(world.ga)
    published = rotation.signing_key_rotate(actor=world.ga)
    activate = reverse("signing-key-activate", args=[published.pk])
    assert b"Activate key" in client.get(activate).content
    assert client.post(activate).status_code == 302
    published.refresh_from_db()
    active_key.refresh_from_db()
    assert published.state == KeyState.ACTIVE and active_key.state == KeyState.RETIRED
    retire = reverse("signing-key-retire", args=[published.pk])
    assert b"stops signing now" in client.get(retire).content
    assert client.post(retire).status_code == 302
    published.refresh_from_db()
    assert published.state == KeyState.RETIRED
    assert SigningKey.objects.filter(state=KeyState.ACTIVE).count() == 1


def test_r25_readers_and_others_cannot_change_keys_and_missing_keys_are_404(client, world, reader, active_key):
    published = rotation.signing_key_rotate(actor=world.ga)
    urls = [reverse("signing-key-rotate"), reverse("signing-key-activate", args=[published.pk]),
            reverse("signing-key-retire", args=[active_key.pk])]
    for user in (reader, world.owner, world.contributor):
        client.force_login(user)
        for url in urls:
            assert client.get(url).status_code == 403, (user.username, url)
            assert client.post(url).status_code == 403, (user.username, url)
    assert SigningKey.objects.get(pk=published.pk).state == KeyState.PUBLISHED
    assert SigningKey.objects.get(pk=active_key.pk).state == KeyState.ACTIVE
    client.force_login(world.ga)
    for name in ("signing-key-activate", "signing-key-retire"):
        assert client.get(reverse(name, args=[987654])).status_code == 404
        assert client.post(reverse(name, args=[987654])).status_code == 404
    # Activating a key that is not published is refused with a message.
    response = client.post(reverse("signing-key-activate", args=[active_key.pk]), follow=True)
    assert response.status_code == 200 and b"Only a published key can be activated" in response.content


def _queries_for_list(client) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("signing-key-list")).status_code == 200
    return len(captured)


def test_r25_the_keys_page_needs_the_same_queries_for_few_and_many_keys(client, world, active_key):
    from django.utils import timezone

    client.force_login(world.ga)

    def add_retired(n):
        now = timezone.now()
        SigningKey.objects.bulk_create(SigningKey(kid=f"old-{SigningKey.objects.count()}-{i}", public_jwk={},
                                                  private_key=b"", state=KeyState.RETIRED, activated_at=now,
                                                  retired_at=now, created_by=world.ga) for i in range(n))

    client.get(reverse("signing-key-list"))  # the session's first page does its one-off work
    add_retired(2)
    few = _queries_for_list(client)
    add_retired(60)  # past one page of 50
    many = _queries_for_list(client)
    assert few == many
