"""One answer for a service's refusal on every API endpoint (DRF's ``EXCEPTION_HANDLER``).

Services raise Django's ``ValidationError`` and ``PermissionDenied``; the API views call them without catching.
Here a ``ValidationError`` becomes ``400 {"errors": [...]}`` — or ``409`` when it says the object has moved on
(code ``already_decided``: decided, closed or ended already) — and a ``PermissionDenied`` keeps its message in
the 403. Errors that name a row and column (a bulk file, an agent's set-up) list them as objects, and so does
every error of a view that sets ``errors_as_objects``.

Outside DRF's views, ``page_not_found`` and ``server_error`` (the project's ``handler404``/``handler500``) answer
JSON under ``/api/`` — an unknown API URL, a crash — and Django's HTML pages everywhere else. A lost database is a
503 there too (``portal.unavailable``).
"""

from __future__ import annotations

import sys

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from portal import unavailable

CONFLICT_CODES = frozenset({"already_decided"})


def _codes(error: ValidationError) -> set[str]:
    return {getattr(error, "code", None)} | {getattr(e, "code", None) for e in getattr(error, "error_list", [])}


def exception_handler(exc, context):
    if isinstance(exc, ValidationError):
        problems = getattr(exc, "problems", None)
        if problems is not None:
            errors = [{"row": row, "field": field, "message": message} for row, field, message in problems]
        elif getattr(context.get("view"), "errors_as_objects", False):  # the registry API's shape
            errors = [{"field": None, "message": message} for message in exc.messages]
        else:
            errors = exc.messages
        conflict = bool(_codes(exc) & CONFLICT_CODES)
        return Response({"errors": errors},
                        status=status.HTTP_409_CONFLICT if conflict else status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoPermissionDenied) and str(exc):
        exc = exceptions.PermissionDenied(str(exc))
    return drf_exception_handler(exc, context)


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception):
    if _is_api(request):
        return JsonResponse({"detail": f"No API endpoint at {request.path}."}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request):
    failure = sys.exc_info()[1]  # Django calls this handler while handling the error
    if unavailable.is_unavailable(failure):  # the database, lost before the view ran (session, workspace)
        return unavailable.response_for(request, failure)
    if _is_api(request):  # the error itself is in the server log; nothing of it goes to the caller
        return JsonResponse({"detail": "A server error occurred."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return defaults.server_error(request)
