"""The results of an access review instance as CSV (R19): one row per item, read in keyset pages."""

from __future__ import annotations

from collections.abc import Iterator

from governance.reviews.models import (
    ReviewDecision,
    ReviewInstance,
    ReviewItem,
    ReviewItemPermission,
)
from governance.reviews.selectors import BATCH, credential_types
from portal import csvexport

CSV_COLUMNS = ("item", "agent", "access", "granted_at", "granted_by", "ends_at", "last_used_at", "recommendation",
               "recommendation_reason", "decisions", "final_decision", "final_source", "applied_at", "applied_result",
               "credential_types", "permission_advice", "permissions")


def permission_cell(row: ReviewItemPermission) -> str:
    """One permission's evidence as the results page lists it (docs/design.md, R32): its source, whether it was used
    in the review window, its last use (ISO 8601, as the other time columns; "never"), the advice, and once decided
    or applied, the reviewers' choice and its result."""
    last = row.last_used_at.isoformat() if row.last_used_at is not None else "never"
    words = [f"{'used' if row.used else 'not used'}", f"last use {last}", f"advice {row.advice}"]
    if row.decision:
        words.append(f"decided {row.decision}")
    if row.applied_result:
        words.append(row.applied_result)
    return f"{row.permission} ({row.source}): {', '.join(words)}"


def results_csv_rows(instance: ReviewInstance) -> Iterator[list]:
    """The header and one row per item, read in keyset pages with their decisions, the agents' credential types now
    (``credential_types``, space-separated) and the evidence per permission (``permission_advice`` in words and
    ``permissions``, one ``permission_cell`` each, "; "-separated; seven queries per page)."""
    yield list(CSV_COLUMNS)
    last = 0
    while True:
        batch = list(ReviewItem.objects.filter(instance=instance, pk__gt=last).order_by("pk")
                     .values_list("pk", "agent__name", "access", "granted_at", "granted_by", "ends_at",
                                  "last_used_at", "recommendation", "recommendation_reason", "final_decision",
                                  "final_source", "applied_at", "applied_result", "permission_advice",
                                  "agent_id")[:BATCH])
        if not batch:
            return
        last = batch[-1][0]
        decisions: dict[int, list[str]] = {}
        for item_id, username, decision, justification in (
                ReviewDecision.objects.filter(item_id__in=[row[0] for row in batch]).order_by("item_id", "pk")
                .values_list("item_id", "reviewer__username", "decision", "justification")):
            decisions.setdefault(item_id, []).append(f"{username}: {decision}" + (f" ({justification})"
                                                                                   if justification else ""))
        permissions: dict[int, list[str]] = {}
        for permission in ReviewItemPermission.objects.filter(item_id__in=[row[0] for row in batch]).order_by(
                "item_id", "permission", "pk"):
            permissions.setdefault(permission.item_id, []).append(permission_cell(permission))
        types = credential_types(row[-1] for row in batch)
        for row in batch:
            yield [*row[:9], "; ".join(decisions.get(row[0], [])), *row[9:-2], " ".join(types.get(row[-1], [])),
                   row[-2], "; ".join(permissions.get(row[0], []))]


def results_csv_stream(instance: ReviewInstance) -> Iterator[str]:
    """The results as CSV lines, through the portal's one CSV writer (names and justifications people typed cannot
    start a formula in the reader's spreadsheet)."""
    return csvexport.csv_lines(results_csv_rows(instance))
