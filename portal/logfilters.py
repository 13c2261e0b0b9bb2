"""Logging filters that keep the console quiet about what is not a fault."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """``django.request`` logs a refused request (403, 404…) with the exception's traceback; the refusal is an
    ordinary answer, not a fault, so keep the one-line warning and drop the traceback. Server errors (5xx) keep
    theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
