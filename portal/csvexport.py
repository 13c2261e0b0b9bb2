"""The one CSV writer of every export (audit trail, sign-in log, review results, new agents' secrets).

A spreadsheet opening a CSV file runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and a
leading tab or carriage return does not stop it), so a value someone else chose — an agent's name, a client id sent
to the token endpoint by anyone, a justification — could fetch a URL with the sheet's data or run a command. Every
text cell that starts with one of those characters (or their full-width forms, which some spreadsheets read the same
way) is written with a single quote before it, as OWASP recommends: the spreadsheet shows it as text, and a reader of
the file sees the value unchanged after the quote. Numbers the export writes itself (ids, counts) are not someone's
formula and stay numbers; None is an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠")


def cell(value: object) -> object:
    """One value as a safe CSV cell: text that would start a formula gets a leading single quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float | Decimal):
        return value
    text = value.isoformat() if isinstance(value, datetime | date) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """A file-like object whose write() hands the line back, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[Iterable[object]], *, lineterminator: str = "\r\n") -> Iterator[str]:
    """Each row as one CSV line, every cell through ``cell``: a stream (a ``StreamingHttpResponse`` body)."""
    writer = csv.writer(_Echo(), lineterminator=lineterminator)
    for row in rows:
        yield writer.writerow([cell(value) for value in row])


def csv_text(rows: Iterable[Iterable[object]], *, lineterminator: str = "\r\n") -> str:
    """The rows as one CSV string (a small file, such as a download of new secrets)."""
    out = io.StringIO()
    for line in csv_lines(rows, lineterminator=lineterminator):
        out.write(line)
    return out.getvalue()
