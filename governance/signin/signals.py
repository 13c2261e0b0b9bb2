"""What the authorization server announces to the sub-apps above it (they connect in their ``AppConfig.ready()``).

- ``client_authentication_failed(agent, failures, locked_out, address)``: a known client failed to authenticate;
  ``failures`` is how many times in the last 15 minutes (from any address), ``locked_out`` whether this failure
  locked its client id out at ``address`` (the request's). Sent after the sign-in row is written. Risk turns it into
  a detection (docs/design.md, R21).
"""

from __future__ import annotations

from django.dispatch import Signal

client_authentication_failed = Signal()
