"""A request the database cannot serve right now answers 503, never 500 (docs/design.md, "Faults").

When PostgreSQL restarts or fails over, the requests in flight lose their connection: Django raises
``OperationalError`` (the server closed the connection, refused a new one) or ``InterfaceError`` (the connection
is already closed). Nothing they wrote is half-applied — every write is one transaction or one statement — so the
honest answer is "try again shortly": ``503`` with ``Retry-After``, as JSON ``{"error": "temporarily_unavailable"}``
on the OAuth endpoints (RFC 6749's error shape) and ``{"detail": ...}`` on the API, a plain HTML page elsewhere.
The failed connection has already reported its error to Django, which closes it at the end of the request, so the
next request opens a new one (``CONN_HEALTH_CHECKS`` also tests a kept connection before its first query).

``DatabaseUnavailableMiddleware`` answers for errors raised in a view (most of them: the token endpoint's);
``portal.api_errors.server_error`` answers through ``response_for`` for errors raised before the view, in the
middleware that loads the session and the workspace.
"""

from __future__ import annotations

import json
import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.template import loader

logger = logging.getLogger("portal.unavailable")

#: Seconds a client is asked to wait: a restart or a failover takes a few seconds.
RETRY_AFTER_SECONDS = 5
UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


def is_unavailable(error: BaseException | None) -> bool:
    """Whether this error means the database cannot be reached or its connection was lost."""
    return isinstance(error, UNAVAILABLE_ERRORS)


def response_for(request: HttpRequest, error: BaseException) -> HttpResponse:
    """The 503 for a request the database failed under, logged with its path and the error in one line."""
    logger.warning("database unavailable: %s %s answered 503 (%s: %s)", request.method, request.path,
                   type(error).__name__, str(error).strip().splitlines()[0] if str(error).strip() else "")
    if request.path.startswith("/oauth/"):
        body = {"error": "temporarily_unavailable",
                "error_description": f"The service is temporarily unavailable; retry in {RETRY_AFTER_SECONDS} "
                                     f"seconds."}
        response = HttpResponse(json.dumps(body), content_type="application/json", status=503)
        response["Cache-Control"], response["Pragma"] = "no-store", "no-cache"
    elif request.path.startswith("/api/"):
        body = {"detail": "The service is temporarily unavailable; retry shortly."}
        response = HttpResponse(json.dumps(body), content_type="application/json", status=503)
    else:  # a plain page: no layout, whose context processors would query the database again
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """A view that lost the database answers 503 (``response_for``) instead of a server error."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_unavailable(exception):
            return response_for(request, exception)
        return None
