"""Notifications: written with the change that causes them, e-mailed only after it commits, private to each person."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal import notifications
from portal.choices import UserKind
from portal.models import Notification
from portal.notifications import notifications_mark_read, notify, unread_count
from tests.factories import UserFactory


class Boom(Exception):
    pass


def _notify(recipients, subject: str = "Agent matrix-agent was disabled", **kwargs) -> list[Notification]:
    with transaction.atomic():
        return notify(recipients=recipients, subject=subject, body=kwargs.pop("body", "It stopped."), **kwargs)


@pytest.mark.django_db
def test_notify_writes_one_row_per_distinct_active_human_and_mails_only_after_commit(
        world, django_capture_on_commit_callbacks, mailoutbox):
    bot = UserFactory(username="bot", kind=UserKind.AGENT_USER)
    gone = UserFactory(username="gone", is_active=False)
    mailless = UserFactory(username="mailless", email="")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            created = notify(recipients=[world.owner, bot, world.owner, gone, mailless, world.contributor],
                             subject="Approval needed", body="Please review.", link="/agents/")
        assert mailoutbox == [], "nothing may be sent before the change commits"
    assert [n.recipient for n in created] == [world.owner, mailless, world.contributor]
    assert set(Notification.objects.values_list("recipient__username", flat=True)) == {
        "owner", "mailless", "contributor"}
    assert len(callbacks) == 2  # one e-mail per recipient with an address
    assert sorted(m.to[0] for m in mailoutbox) == ["contributor@example.test", "owner@example.test"]
    assert all(m.subject == "Approval needed" and len(m.to) == 1 for m in mailoutbox)


@pytest.mark.django_db
def test_rolled_back_change_creates_nothing_and_sends_nothing(world, django_capture_on_commit_callbacks,
                                                                 mailoutbox):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(Boom), transaction.atomic():
            notify(recipients=[world.owner], subject="Agent retired", body="")
            raise Boom
    assert callbacks == [] and mailoutbox == []
    assert not Notification.objects.exists()


def test_notify_refuses_to_run_outside_the_callers_transaction():
    with pytest.raises(RuntimeError, match="inside the transaction"):
        notify(recipients=[], subject="x", body="")


@pytest.mark.django_db
def test_email_carries_the_absolute_link_and_the_portal_sender(world, settings, django_capture_on_commit_callbacks,
                                                                mailoutbox):
    settings.PORTAL_BASE_URL = "https://portal.example.test"
    settings.DEFAULT_FROM_EMAIL = "portal@example.test"
    with django_capture_on_commit_callbacks(execute=True):
        (notification,) = _notify([world.owner], body="Owner removed.", link="/workspaces/alpha/members/")
    (mail,) = mailoutbox
    assert mail.from_email == "portal@example.test" and mail.to == ["owner@example.test"]
    assert "Owner removed." in mail.body
    assert "https://portal.example.test/workspaces/alpha/members/" in mail.body
    assert notification.link == "/workspaces/alpha/members/"  # stored relative: the page resolves it


@pytest.mark.django_db
@pytest.mark.parametrize("link", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x()",
                                  "agents/"])
def test_links_are_paths_inside_the_portal(world, link):
    with pytest.raises(ValueError, match="path inside the portal"):
        _notify([world.owner], link=link)
    assert not Notification.objects.exists()


@pytest.mark.django_db
def test_the_schema_refuses_links_that_leave_the_portal(world):
    with pytest.raises(IntegrityError), transaction.atomic():
        Notification.objects.create(recipient=world.owner, subject="x", link="//evil.example/x")


@pytest.mark.django_db
def test_a_mail_outage_is_logged_and_never_undoes_the_change(world, monkeypatch, caplog,
                                                            django_capture_on_commit_callbacks, mailoutbox):
    def refuse(*args, **kwargs):
        raise smtplib.SMTPServerDisconnected("relay down")

    monkeypatch.setattr(notifications, "send_mail", refuse)
    with caplog.at_level(logging.ERROR, logger="portal.notifications"), \
            django_capture_on_commit_callbacks(execute=True):
        (notification,) = _notify([world.owner])
    assert Notification.objects.filter(pk=notification.pk).exists()
    assert any(r.exc_info and f"#{notification.pk}" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_long_subjects_are_shortened_to_the_column(world):
    (notification,) = _notify([world.owner], subject="x" * 500)
    assert len(notification.subject) == 200 and notification.subject.endswith("…")


@pytest.mark.django_db
def test_mark_read_only_touches_the_actors_own_rows(world):
    mine_a, mine_b = _notify([world.owner]) + _notify([world.owner])
    (theirs,) = _notify([world.contributor])
    assert notifications_mark_read(actor=world.contributor, notification_ids=[mine_a.pk]) == 0
    assert notifications_mark_read(actor=world.owner, notification_ids=[mine_a.pk, theirs.pk]) == 1
    assert unread_count(world.owner) == 1 and unread_count(world.contributor) == 1
    assert notifications_mark_read(actor=world.owner) == 1
    assert notifications_mark_read(actor=world.owner) == 0  # already read: nothing to do
    assert unread_count(world.owner) == 0
    assert Notification.objects.get(pk=theirs.pk).read_at is None


@pytest.mark.django_db
def test_unread_count_is_one_query(world, django_assert_num_queries):
    _notify([world.owner])
    with django_assert_num_queries(1):
        assert unread_count(world.owner) == 1


@pytest.mark.django_db
def test_page_lists_only_own_notifications_newest_first_and_the_header_counts_unread(client, world):
    _notify([world.owner], subject="Older <b>news</b>", link="/agents/")
    _notify([world.owner], subject="Newer news")
    _notify([world.contributor], subject="Someone else's news")
    client.force_login(world.owner)
    response = client.get("/notifications/")
    body = response.content.decode()
    assert response.status_code == 200 and response.context["unread_notifications"] == 2
    assert "Someone else" not in body
    assert body.index("Newer news") < body.index("Older &lt;b&gt;news&lt;/b&gt;")  # newest first, escaped
    assert '<a href="/agents/">Older &lt;b&gt;news&lt;/b&gt;</a>' in body
    assert body.count("data-unread") == 3  # two highlighted rows and the header badge
    assert 'aria-label="Notifications, 2 unread"' in body
    # The header shows the count on every page, not only this one.
    assert 'aria-label="Notifications, 2 unread"' in client.get("/").content.decode()


@pytest.mark.django_db
def test_empty_state_and_no_badge_without_unread(client, world):
    client.force_login(world.newcomer)
    body = client.get("/notifications/").content.decode()
    assert "No notifications" in body
    assert 'aria-label="Notifications"' in body and "data-unread-count" not in body


@pytest.mark.django_db
def test_posting_read_marks_the_posted_ids_or_everything_and_returns_to_the_list(client, world):
    first, second = _notify([world.owner]) + _notify([world.owner])
    (theirs,) = _notify([world.contributor])
    client.force_login(world.owner)
    response = client.post("/notifications/read/", {"id": [first.pk, theirs.pk]})
    assert response.status_code == 302 and response["Location"] == "/notifications/"
    assert unread_count(world.owner) == 1 and unread_count(world.contributor) == 1
    client.post("/notifications/read/", {"id": ["not-a-number", "9" * 40]})  # matches nothing, marks nothing
    assert unread_count(world.owner) == 1
    body = client.post("/notifications/read/", follow=True).content.decode()
    assert "1 notification marked read." in body and "data-unread-count" not in body
    assert unread_count(world.owner) == 0 and unread_count(world.contributor) == 1
    assert client.get("/notifications/read/").status_code == 405


def _add_notifications(user, n: int) -> None:
    now = timezone.now()
    Notification.objects.bulk_create(
        Notification(recipient=user, subject=f"Notice {i}", body="Body", link="/agents/",
                     created_at=now - timedelta(minutes=i), read_at=now if i % 2 else None)
        for i in range(n)
    )


def _count_queries(client, url: str) -> int:
    client.get(url)  # warm up: the first request of a session also records the user's last_seen_at
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


NOTIFICATIONS_PAGE_QUERIES = 12  # session, user, header (incl. the unread count and review counter), page rows


@pytest.mark.django_db
def test_notifications_page_runs_a_constant_number_of_queries(client, world):
    client.force_login(world.owner)
    _add_notifications(world.owner, 10)
    small = _count_queries(client, "/notifications/")
    _add_notifications(world.owner, 990)
    assert Notification.objects.filter(recipient=world.owner).count() == 1000
    large = _count_queries(client, "/notifications/")
    assert small == large == NOTIFICATIONS_PAGE_QUERIES
