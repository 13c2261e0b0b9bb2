"""How a run reads data: through the portal's own API, with the run's access token (R22).

Every read a built-in agent makes is an HTTP request to ``/api/v1/…`` carrying ``Authorization: Bearer <the run's
token>``, so it passes the same authentication, scope checks and visibility as any agent's request, and the token's
issuance is in the sign-in log where the risk job sees it. By default the requests go to the portal in-process (a
WSGI transport: no socket, no second server to configure); with ``PORTAL_API_URL`` set they go over the network to
that address instead (e.g. a load balancer in front of several web servers).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler, get_script_name
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.urls import set_script_prefix


class PortalReadError(Exception):
    """The API refused or failed a read; the message says which and why (shown on the run)."""

    def __init__(self, path: str, status: int, detail: str):
        super().__init__(f"GET {path} answered {status}: {detail}")
        self.path, self.status, self.detail = path, status, detail


class RunTimeLimit(Exception):
    """The run reached its time limit between two reads."""


class _InProcessHandler(WSGIHandler):
    """The portal's WSGI handler without the per-request connection recycling: the run's own database connection
    (and, in tests, its transaction) must survive the reads, as Django's test client does it. The response is
    closed (and ``request_finished`` sent) before returning, so nothing is left open."""

    def __call__(self, environ, start_response):
        set_script_prefix(get_script_name(environ))
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            request_started.send(sender=self.__class__, environ=environ)
            request = self.request_class(environ)
            response = self.get_response(request)
            body = b"".join(response) if response.streaming else response.content
            response.close()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        status = f"{response.status_code} {response.reason_phrase}"
        headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
        start_response(status, headers)
        return [body]


def _in_process_transport() -> httpx.WSGITransport:
    return httpx.WSGITransport(app=_InProcessHandler())


def _base_url() -> str:
    if settings.PORTAL_API_URL:
        return settings.PORTAL_API_URL.rstrip("/")
    # In-process: any host the portal accepts, over https so a production SECURE_SSL_REDIRECT does not bounce it.
    hosts = [h for h in settings.ALLOWED_HOSTS if h and "*" not in h and not h.startswith(".")]
    host = hosts[0] if hosts else urlsplit(settings.PORTAL_BASE_URL).hostname or "localhost"
    return f"https://{host}"


class PortalClient:
    """A read-only API client bound to one access token, with an optional deadline (the run's time limit)."""

    def __init__(self, token: str, *, deadline: float | None = None, timeout: float = 30.0):
        transport = None if settings.PORTAL_API_URL else _in_process_transport()
        self.deadline = deadline
        self.reads: list[str] = []
        self._http = httpx.Client(base_url=_base_url(), transport=transport, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})

    def __enter__(self) -> PortalClient:
        return self

    def __exit__(self, *exc) -> None:
        self._http.close()

    def get(self, path: str, params: dict | None = None):
        """One API read: the decoded JSON body, or ``PortalReadError`` naming the status and the API's reason."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RunTimeLimit("The run reached its time limit.")
        response = self._http.get(path, params=params)
        self.reads.append(str(response.request.url.copy_with(scheme=None, host=None, port=None)))
        if response.status_code != 200:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text[:200]
            raise PortalReadError(path, response.status_code, str(detail))
        return response.json()

    def get_all(self, path: str, params: dict | None = None) -> list:
        """Every item of a paginated list endpoint: page after page while the API says there is a ``next`` one."""
        body = self.get(path, params)
        if isinstance(body, list):
            return body
        items = list(body.get("results", []))
        page = 1
        while body.get("next"):
            page += 1
            body = self.get(path, {**(params or {}), "page": page})
            items.extend(body.get("results", []))
        return items
