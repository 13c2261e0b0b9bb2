"""The API's input read at the edge (DRF's parser and pagination classes): a malformed request is a clear 400.

Kept apart from ``portal.api`` and ``portal.api_errors`` because DRF imports its default parser and pagination
classes while ``rest_framework.views`` and ``rest_framework.generics`` are still loading.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from rest_framework.exceptions import ParseError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser


class BoundedJSONParser(JSONParser):
    """JSON bodies; one nested thousands deep (``[[[[…``) exhausts the decoder's stack: a 400, not a server error."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


#: The largest id a database holds (a signed 64-bit integer); beyond it SQLite cannot even bind the value.
ID_MAX = 2**63 - 1


def whole_number_param(request, name: str) -> int | None:
    """The query parameter ``name`` as an id (digits only), None when absent or empty; anything else is a 400."""
    value = request.query_params.get(name, "")
    if not value:
        return None
    if not value.isdigit() or int(value) > ID_MAX:
        raise ValidationError(f"The query parameter '{name}' is an id, a whole number; '{value[:40]}' is not.")
    return int(value)


class StrictPageNumberPagination(PageNumberPagination):
    """``?page=`` is a positive whole number (or ``last``); ``page=null`` or ``page=1.5`` is a 400 that says so.
    A page past the end stays DRF's 404 ("Invalid page")."""

    def paginate_queryset(self, queryset, request, view=None):
        value = request.query_params.get(self.page_query_param)
        if value is not None and value not in self.last_page_strings and not (value.isdigit() and int(value) > 0):
            raise ValidationError(f"The query parameter '{self.page_query_param}' is a page number from 1; "
                                  f"'{value[:40]}' is not.")
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"] = {**parameter["schema"], "minimum": 1}
        return parameters
