"""Request id for audit correlation, and the current workspace chosen in the header switcher."""

from __future__ import annotations

import re
import uuid

from django.utils import timezone

from portal import audit, rbac
from portal.models import User, Workspace

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SESSION_WORKSPACE_KEY = "current_workspace_id"
LAST_SEEN_RESOLUTION_SECONDS = 300


class RequestIdMiddleware:
    """Tags every audit event written during a request with its id (kept from X-Request-ID when well-formed)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request.id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = audit.current_request_id.set(request.id)
        try:
            response = self.get_response(request)
        finally:
            audit.current_request_id.reset(token)
        response["X-Request-ID"] = request.id
        return response


def _current_workspace(request) -> Workspace | None:
    user = request.user
    if not user.is_authenticated:
        return None
    visible = rbac.workspaces_visible_to(user)
    chosen = request.session.get(SESSION_WORKSPACE_KEY)
    workspace = visible.filter(pk=chosen).first() if chosen else None
    return workspace or visible.order_by("name").first()


class CurrentWorkspaceMiddleware:
    """``request.workspace``: the workspace picked in the switcher, else the first the user can see, else ``None``.

    Resolved here, not lazily: a lazy wrapper around ``None`` is not ``None``, so every ``request.workspace is None``
    check downstream would pass a person in no workspace (a Security Reader) on as if they had one. Every page reads
    it anyway (the header's switcher), so resolving it up front costs no extra query there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.workspace = _current_workspace(request)
        user = request.user
        if user.is_authenticated:
            now = timezone.now()
            # Presence, not a governance change: updated at most every five minutes, not audited.
            if user.last_seen_at is None or (now - user.last_seen_at).total_seconds() > LAST_SEEN_RESOLUTION_SECONDS:
                User.objects.filter(pk=user.pk).update(last_seen_at=now)
        return self.get_response(request)
