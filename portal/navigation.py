"""Counters in the page header and cards on the dashboard contributed by higher layers (the portal never imports
them).

An app appends a callable to ``HEADER_COUNTS`` when it loads; each takes the signed-in user and returns
``(label, url, count)`` or None, with one cheap query at most, so every page costs the same number of queries.
Likewise ``DASHBOARD_CARDS``: each takes the request and returns a dict with ``template`` (rendered with the dict as
``card``) or None, in a fixed number of queries whatever the row counts.
"""

from __future__ import annotations

from collections.abc import Callable

HeaderCount = tuple[str, str, int]

HEADER_COUNTS: list[Callable[[object], HeaderCount | None]] = []


def header_counts(user) -> list[HeaderCount]:
    """The non-zero counters for ``user``, in registration order."""
    entries = []
    for counter in HEADER_COUNTS:
        entry = counter(user)
        if entry is not None and entry[2] > 0:
            entries.append(entry)
    return entries


DASHBOARD_CARDS: list[Callable[[object], dict | None]] = []


def dashboard_cards(request) -> list[dict]:
    """The dashboard cards for this request, in registration order."""
    return [card for hook in DASHBOARD_CARDS if (card := hook(request)) is not None]
