"""Counters in the page header contributed by higher layers (the portal never imports them).

An app appends a callable to ``HEADER_COUNTS`` when it loads; each takes the signed-in user and returns
``(label, url, count)`` or None, with one cheap query at most, so every page costs the same number of queries.
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
