"""In-app notifications, each also e-mailed to its recipient once the change that caused it has committed.

``notify()`` is the only way a notification is written. Like ``portal.audit.record`` it runs inside the caller's
transaction, so a rolled-back change leaves no notification behind and sends no e-mail: the rows are
written now, the e-mails are handed to ``transaction.on_commit``. A mail server that is down costs a log line,
never the change itself.

No secrets, ever: a notification is plain text that lands in mailboxes and mail relays we do not control.
Callers say *that* something happened and link to the page that shows it; a credential value, token, password or
one-time secret must never appear in ``subject``, ``body`` or ``link``. The page behind the link applies its own
permission checks, so a link grants nothing.

This module is in the portal layer: it knows users, not agents or governance, and those apps call it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from portal.choices import UserKind
from portal.models import Notification, User

logger = logging.getLogger(__name__)

SUBJECT_MAX_LENGTH = Notification._meta.get_field("subject").max_length


def _checked_link(link: str) -> str:
    """A path inside the portal ("/agents/12/") or ""; anything with a scheme or host is a programming error."""
    if not link:
        return ""
    if not link.startswith("/") or not url_has_allowed_host_and_scheme(link, allowed_hosts=None):
        raise ValueError(f"A notification link must be a path inside the portal, not {link!r}.")
    return link


def absolute_link(link: str) -> str:
    """The link as a full URL for e-mail, where a relative path means nothing."""
    return f"{settings.PORTAL_BASE_URL}{link}" if link else settings.PORTAL_BASE_URL + "/"


def _email_body(notification: Notification) -> str:
    parts = [notification.body.strip()] if notification.body.strip() else []
    parts.append(f"Open it in the Agent Identity Portal: {absolute_link(notification.link)}")
    parts.append("You receive this because you have an account in the Agent Identity Portal.")
    return "\n\n".join(parts) + "\n"


def _send_email(*, notification_id: int, address: str, subject: str, body: str) -> None:
    """Send one notification e-mail; a failure is logged and swallowed so it never undoes or breaks anything."""
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [address], fail_silently=False)
    except Exception:  # the change has committed; a mail outage must not surface as an error to anyone
        logger.exception("Could not e-mail notification #%s.", notification_id)


def _human_recipients(recipients: Iterable[User]) -> list[User]:
    """Distinct active human users, in the order given. Agent users have no inbox; inactive users read nothing."""
    seen: set[int] = set()
    chosen = []
    for user in recipients:
        if user.pk in seen or not user.is_active or user.kind != UserKind.HUMAN:
            continue
        seen.add(user.pk)
        chosen.append(user)
    return chosen


@dataclass(frozen=True)
class Message:
    """One notification for ``notify_many``: what ``notify`` takes."""

    recipients: Sequence[User]
    subject: str
    body: str
    link: str = ""


def notify(*, recipients: Iterable[User], subject: str, body: str, link: str = "") -> list[Notification]:
    """Tell people something happened: one row per distinct active human, one e-mail each after commit.

    Must run inside the transaction of the change it reports (like ``audit.record``): the rows commit or roll
    back with that change, and the e-mails are sent only once it has committed. Never put a secret in
    ``subject``, ``body`` or ``link`` (see the module docstring). ``link`` is a path inside the portal; the
    e-mail carries it as an absolute URL built from ``settings.PORTAL_BASE_URL``. Subjects longer than the
    column are shortened.
    """
    return notify_many([Message(list(recipients), subject, body, link)])


def notify_many(messages: Iterable[Message]) -> list[Notification]:
    """``notify`` for many messages at once (e.g. one per person a bulk file named), in one insert whatever their
    number; each message as ``notify`` would write it."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("notify() must run inside the transaction of the change it reports.")
    now = timezone.now()
    rows: list[Notification] = []
    people: list[User] = []
    for message in messages:
        link = _checked_link(message.link)
        subject = message.subject
        if len(subject) > SUBJECT_MAX_LENGTH:
            subject = subject[: SUBJECT_MAX_LENGTH - 1] + "…"
        for person in _human_recipients(message.recipients):
            rows.append(Notification(recipient=person, subject=subject, body=message.body, link=link,
                                     created_at=now))
            people.append(person)
    if not rows:
        return []
    created = Notification.objects.bulk_create(rows)
    for notification, person in zip(created, people, strict=True):
        if not person.email:
            continue
        # Everything the e-mail needs is bound now: the callback runs after commit and re-reads nothing.
        transaction.on_commit(partial(_send_email, notification_id=notification.pk, address=person.email,
                                      subject=notification.subject, body=_email_body(notification)))
    return created


@transaction.atomic
def notifications_mark_read(*, actor: User, notification_ids: Iterable[int] | None = None) -> int:
    """Mark the actor's own unread notifications read (all of them when ``notification_ids`` is None).

    Only rows whose recipient is ``actor`` are touched, whatever ids are passed, so another person's
    notifications can neither be read nor marked. Reading notifications is personal UI state, not a governance
    change (like ``last_seen_at``), so no audit event is written: R23's trail is for governance state.
    Returns how many rows changed.
    """
    unread = Notification.objects.filter(recipient=actor, read_at__isnull=True)
    if notification_ids is not None:
        unread = unread.filter(pk__in=list(notification_ids))
    return unread.update(read_at=timezone.now())


def unread_count(user: User) -> int:
    """How many unread notifications the user has: one COUNT over the (recipient, read_at) index."""
    return Notification.objects.filter(recipient=user, read_at__isnull=True).count()


def notifications_for(user: User) -> QuerySet[Notification]:
    """The user's own notifications, newest first (the selector behind the Notifications page)."""
    return Notification.objects.filter(recipient=user).order_by("-created_at", "-id")
