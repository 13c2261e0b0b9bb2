"""A new secret is shown once through Post/Redirect/Get: the form's POST redirects to a page that takes the secret out
of the session as it shows it; reloading that page re-submits nothing and shows the secret no more."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agents.models import Credential
from portal.models import AuditEvent

pytestmark = pytest.mark.django_db


def _secret(body: str) -> str:
    return body.split('id="client-secret" class="user-select-all">')[1].split("<")[0]


def test_reloading_the_page_that_showed_a_new_secret_does_not_rotate_again_or_show_it_again(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    credentials = Credential.objects.filter(identity__agent=w.agent).count()
    rotated = client.post(reverse("agent-credential-rotate", args=[w.agent.pk]))
    secret_page = reverse("agent-secret-once", args=[w.agent.pk])
    assert rotated.status_code == 302 and rotated["Location"] == secret_page

    shown = client.get(secret_page)
    secret = _secret(shown.content.decode())
    assert secret.startswith("aip_") and "no-store" in shown["Cache-Control"]
    assert Credential.objects.filter(identity__agent=w.agent).count() == credentials + 1
    rotations = AuditEvent.objects.filter(action__contains="rotate").count()

    reloaded = client.get(secret_page, follow=True)  # the browser's reload is a GET of this page
    body = reloaded.content.decode()
    assert secret not in body and "was shown once and is no longer available" in body
    assert Credential.objects.filter(identity__agent=w.agent).count() == credentials + 1  # nothing re-submitted
    assert AuditEvent.objects.filter(action__contains="rotate").count() == rotations


def test_someone_else_cannot_take_the_secret_waiting_in_your_session(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    client.post(reverse("agent-credential-rotate", args=[w.agent.pk]))
    client.force_login(w.other)  # a new session: nothing waits there, and the agent is not theirs
    assert client.get(reverse("agent-secret-once", args=[w.agent.pk])).status_code == 404
