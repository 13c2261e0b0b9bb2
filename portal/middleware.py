"""Request id for audit correlation, the current workspace chosen in the header switcher, and the short chain of
the machine endpoints."""

from __future__ import annotations

import re
import uuid

from csp.utils import build_policy
from django.conf import settings
from django.middleware.security import SecurityMiddleware
from django.urls import resolve, reverse
from django.utils import timezone

from portal import audit, rbac
from portal.models import User, Workspace
from portal.unavailable import is_unavailable, response_for

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


class MachineEndpointMiddleware:
    """Serve the machine endpoints (``settings.MACHINE_ENDPOINTS``: URL names of endpoints that agents and resource
    servers call, never a browser) through a short middleware chain of their own (docs/design.md, "Machine
    endpoints").

    First in ``MIDDLEWARE``. A request for one of these paths gets what applies to it of the full chain, in the same
    order: the security headers (``SecurityMiddleware``: HTTPS redirect, HSTS, nosniff, referrer policy), the
    Content-Security-Policy and ``X-Frame-Options`` headers every response carries, the request id, and the 503 of
    a lost database (``portal.unavailable``). It skips what cannot apply to a form-encoded POST authenticated by its
    own credentials: sessions, CSRF (the views are exempt), the signed-in user, messages, htmx, the current
    workspace, static files and the slash redirect (only the exact paths come here). The token endpoint is called on
    every request an agent makes; the full chain was a third of its CPU. Every other request goes on down the full
    chain."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.routes: dict[str, object] | None = None  # path -> ResolverMatch, on the first request
        self.content_security_policy = build_policy()
        self.machine_chain = RequestIdMiddleware(SecurityMiddleware(self._serve))

    def _routes(self) -> dict[str, object]:
        if self.routes is None:
            self.routes = {path: resolve(path) for path in (reverse(name) for name in settings.MACHINE_ENDPOINTS)}
        return self.routes

    def __call__(self, request):
        match = self._routes().get(request.path_info)
        if match is None:
            return self.get_response(request)
        request.resolver_match = match
        return self.machine_chain(request)

    def _serve(self, request):
        match = request.resolver_match
        try:
            response = match.func(request, *match.args, **match.kwargs)
        except Exception as error:  # the innermost middleware's job in the full chain
            if is_unavailable(error):
                return response_for(request, error)
            raise
        if self.content_security_policy:
            response.setdefault("Content-Security-Policy", self.content_security_policy)
        response.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        if not response.streaming:  # as CommonMiddleware does: no chunked encoding for a small JSON body
            response.setdefault("Content-Length", str(len(response.content)))
        return response
