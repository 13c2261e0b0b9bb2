"""Small helpers shared by every app's views: pagination and calling a service from a request."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, StreamingHttpResponse
from django.utils import timezone

from portal import csvexport

PAGE_SIZE = 50


def current_workspace(request):
    """The workspace chosen in the header; a person in no workspace gets a 404."""
    if request.workspace is None:
        raise Http404("You are not a member of any workspace.")
    return request.workspace


def page(request, queryset, per_page: int = PAGE_SIZE):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def error_messages(error: ValidationError) -> list[str]:
    return error.messages if hasattr(error, "messages") else [str(error)]


def flash_errors(request, error: ValidationError) -> None:
    for message in error_messages(error):
        messages.error(request, message)


def flash_form_errors(request, form) -> None:
    """A one-click form posted from another page: its field errors become flash messages there."""
    for errors in form.errors.values():
        for message in errors:
            messages.error(request, message)


def submit(request, form, service, **arguments):
    """On a valid POST, call ``service(actor=…, **arguments, **form data)``; its refusals land on the form.

    Returns the service's result, or None when there was nothing to do or the service refused.
    """
    if request.method != "POST" or not form.is_valid():
        return None
    try:
        return service(actor=request.user, **arguments, **form.cleaned_data)
    except ValidationError as error:
        form.add_error(None, error)
        return None


def act(request, service, success: Callable[[object], str], **arguments):
    """Call a one-click service (no form) and report its outcome as a flash message."""
    try:
        result = service(actor=request.user, **arguments)
    except ValidationError as error:
        flash_errors(request, error)
        return None
    messages.success(request, success(result))
    return result


def streamed_export(request, rows: Iterable[dict], columns: Sequence[str], stem: str,
                    csv_cell: Callable[[str, object], object] = lambda column, value: value) -> StreamingHttpResponse:
    """``rows`` as CSV (default) or JSON (``?format=json``), streamed one row at a time: memory stays flat
    whatever the row count. ``csv_cell(column, value)`` flattens a value for CSV; None becomes empty, and every
    cell goes through ``portal.csvexport``, which keeps a value that starts like a formula from running as one."""
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    if request.GET.get("format") == "json":
        def json_stream():
            yield "["
            for index, row in enumerate(rows):
                yield ("," if index else "") + "\n" + json.dumps(row, separators=(",", ":"))
            yield "\n]\n"

        response, extension = StreamingHttpResponse(json_stream(), content_type="application/json"), "json"
    else:
        def csv_rows():
            yield columns
            for row in rows:
                yield [None if row[c] is None else csv_cell(c, row[c]) for c in columns]

        response, extension = StreamingHttpResponse(csvexport.csv_lines(csv_rows()), content_type="text/csv"), "csv"
    response["Content-Disposition"] = f'attachment; filename="{stem}-{stamp}.{extension}"'
    return response
