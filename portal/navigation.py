"""Counters in the page header and cards on the dashboard, contributed by higher layers through
``portal.signals`` (the portal never imports them)."""

from __future__ import annotations

from portal import signals

HeaderCount = tuple[str, str, int]


def header_counts(user) -> list[HeaderCount]:
    """The non-zero counters for ``user``, in the apps' order."""
    return [entry for _receiver, entry in signals.header_counts.send(sender=None, user=user)
            if entry is not None and entry[2] > 0]


def dashboard_cards(request) -> list[dict]:
    """The dashboard cards for this request, in the apps' order (a receiver answers one card or a list of them)."""
    cards = []
    for _receiver, answer in signals.dashboard_cards.send(sender=None, request=request):
        if isinstance(answer, list | tuple):
            cards.extend(card for card in answer if card is not None)
        elif answer is not None:
            cards.append(answer)
    return cards
