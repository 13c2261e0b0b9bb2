"""Small helpers shared by every app's views: pagination and calling a service from a request."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator

PAGE_SIZE = 50


def page(request, queryset, per_page: int = PAGE_SIZE):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))


def error_messages(error: ValidationError) -> list[str]:
    return error.messages if hasattr(error, "messages") else [str(error)]


def flash_errors(request, error: ValidationError) -> None:
    for message in error_messages(error):
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
