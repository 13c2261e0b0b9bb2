"""How times are written for people: in the portal's time zone (``TIME_ZONE``), to the minute, with the zone's
name, so a page, a notification and a review item show one instant the same way (``2026-12-01 04:50 UTC``)."""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone

MINUTE, SECOND = "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"


def when(value: datetime | date | None, *, seconds: bool = False) -> str:
    """``value`` in the portal's zone with the zone named; "" for None; a date stays a date."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        local = timezone.localtime(value) if timezone.is_aware(value) else value
        zone = local.tzname() or timezone.get_current_timezone_name()
        return f"{local.strftime(SECOND if seconds else MINUTE)} {zone}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
