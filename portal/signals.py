"""What the portal's pages ask the apps above it (the portal never imports them; docs/design.md, "Layers").

- ``header_counts(user)``: a counter for the page header as ``(label, url, count)``, or None; one cheap query at
  most, so every page costs the same number of queries.
- ``dashboard_cards(request)``: a dashboard card as a dict with ``template`` (rendered with the dict as ``card``), or
  None, in a fixed number of queries whatever the row counts.

Receivers are connected in the higher apps' ``AppConfig.ready()``.
"""

from __future__ import annotations

from django.dispatch import Signal

header_counts = Signal()
dashboard_cards = Signal()
