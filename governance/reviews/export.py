"""The results of an access review instance as CSV (R19): one row per item, read in keyset pages."""

from __future__ import annotations

from collections.abc import Iterator

from governance.reviews.models import (
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
)
from governance.reviews.selectors import BATCH, credential_types
from portal import csvexport

CSV_COLUMNS = ("item", "agent", "access", "granted_at", "granted_by", "ends_at", "last_used_at", "recommendation",
               "recommendation_reason", "decisions", "final_decision", "final_source", "applied_at", "applied_result",
               "credential_types")


def results_csv_rows(instance: ReviewInstance) -> Iterator[list]:
    """The header and one row per item, read in keyset pages with their decisions and the agents' credential types
    now (``credential_types``, space-separated; six queries per page)."""
    yield list(CSV_COLUMNS)
    last = 0
    while True:
        batch = list(ReviewItem.objects.filter(instance=instance, pk__gt=last).order_by("pk")
                     .values_list("pk", "agent__name", "access", "granted_at", "granted_by", "ends_at",
                                  "last_used_at", "recommendation", "recommendation_reason", "final_decision",
                                  "final_source", "applied_at", "applied_result", "agent_id")[:BATCH])
        if not batch:
            return
        last = batch[-1][0]
        decisions: dict[int, list[str]] = {}
        for item_id, username, decision, justification in (
                ReviewDecision.objects.filter(item_id__in=[row[0] for row in batch]).order_by("item_id", "pk")
                .values_list("item_id", "reviewer__username", "decision", "justification")):
            decisions.setdefault(item_id, []).append(f"{username}: {decision}" + (f" ({justification})"
                                                                                   if justification else ""))
        types = credential_types(row[-1] for row in batch)
        for row in batch:
            yield [*row[:9], "; ".join(decisions.get(row[0], [])), *row[9:-1], " ".join(types.get(row[-1], []))]


def results_csv_stream(instance: ReviewInstance) -> Iterator[str]:
    """The results as CSV lines, through the portal's one CSV writer (names and justifications people typed cannot
    start a formula in the reader's spreadsheet)."""
    return csvexport.csv_lines(results_csv_rows(instance))
