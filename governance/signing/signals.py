"""What the signing keys ask the sub-apps above them (docs/oauth.md, "Signing keys").

The keys sit below the authorization server (docs/design.md, "Layers"), which holds the token rows; to know whether
a retired key may still have signed a live token, rotation asks, and the authorization server answers from its
``AppConfig.ready()`` receiver.

- ``live_tokens(windows, now)``: ``windows`` is a list of ``(key_id, signed_from, signed_until)`` (``signed_until``
  None for a key still signing); the answer is ``{key_id: n}``, the number of token rows, revoked or not, issued in
  that window and expiring after ``now``. Without any receiver the answer is unknown and no key is removed.
"""

from __future__ import annotations

from django.dispatch import Signal

live_tokens = Signal()
