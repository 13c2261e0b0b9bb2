"""What access announces to the sub-apps above it (they connect receivers in their ``AppConfig.ready()``).

- ``assignments_ended(assignments, reason)``: assignments that were active have just ended (expired, revoked, by
  a review's result), inside the transaction that ended them; the tokens that carried their permissions must end
  with them (docs/design.md, "Every assignment ends"). ``reason`` is ``PACKAGE_REMOVED`` when they end because their
  package was removed (docs/blast-radius.md): the people its preview listed are told once, for the whole package.
"""

from __future__ import annotations

from django.dispatch import Signal

assignments_ended = Signal()

#: The ``reason`` of ``assignments_ended`` (and the assignments' end reason) when their package is removed.
PACKAGE_REMOVED = "access package removed"
