"""Sign-in exports too large for a request (docs/design.md, "The sign-in log at volume").

An export of the filtered log up to ``EXPORT_MAX_ROWS`` rows streams in the request (``views.signin_export``).
A larger one is a ``SignInExport``: ``signin_export_start`` records it (audited) and queues it; a Celery worker
(``signin_export_run``) applies the filters again as the requester, writes the file under ``EXPORT_DIR`` with
progress the page polls, and ``signin_export_download`` hands the file over once, to the requester only: the row
is marked downloaded and the file unlinked in the same transaction as its audit event, as the bulk secrets are.
``expire_sign_in_exports`` deletes the files nobody fetched once ``EXPORT_FILE_HOURS`` have passed. The file
holds the export's columns only: no secret, no token.
"""

from __future__ import annotations

import json
import logging
import secrets
import traceback
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import IO

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from governance.signin import signins
from governance.signin.forms import SignInFilterForm
from governance.signin.models import SignInExport
from portal import audit, celery, csvexport, jobs, rbac
from portal.models import User

logger = logging.getLogger(__name__)

FORMATS = ("csv", "json")
PROGRESS_EVERY = 10_000
FORBIDDEN = "The sign-in log is open to workspace owners and security readers."


class ExportGone(Exception):
    """The export's file was already downloaded, has expired or never got written: said in words for the page."""


def export_dir() -> Path:
    path = Path(settings.EXPORT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def filters_from_query(query: Mapping[str, str]) -> dict:
    """The log's filters from a query string, as the page reads them (invalid ones refused with the form's words)."""
    form = SignInFilterForm({key: query[key] for key in query if key not in ("page", "format")})
    if not form.is_valid():
        raise ValidationError([message for errors in form.errors.values() for message in errors])
    return {key: query[key] for key in query if key not in ("page", "format") and query[key]}


def rows_for(user: User, filters: Mapping[str, str], now=None):
    """The rows an export of these filters holds, for this user (the same reads as the page)."""
    form = SignInFilterForm(dict(filters))
    if not form.is_valid():
        return signins.signins_visible_to(user).none()
    return signins.signins_filtered(signins.signins_visible_to(user), form.cleaned_data, now=now)


def is_large(user: User, filters: Mapping[str, str]) -> bool:
    """More than ``EXPORT_MAX_ROWS`` rows? (counts at most that many plus one)."""
    limit = settings.EXPORT_MAX_ROWS
    return rows_for(user, filters).order_by().values("pk")[:limit + 1].count() > limit


@transaction.atomic
def signin_export_start(*, actor: User, filters: Mapping[str, str], file_format: str = "csv") -> SignInExport:
    """Queue an export of the log as the actor filters it; the worker starts once this transaction commits."""
    rbac.require(actor is not None and actor.is_active and signins.can_view_signins(actor), FORBIDDEN)
    if file_format not in FORMATS:
        raise ValidationError("The export's format is csv or json.")
    filters = filters_from_query(filters)
    now = timezone.now()
    export = SignInExport.objects.create(requested_by=actor, created_at=now, file_format=file_format,
                                         filters=filters, expires_at=now + timedelta(hours=settings.EXPORT_FILE_HOURS))
    audit.record(actor=actor, action="signin.export_start", target=export,
                 after={"filters": filters, "format": file_format})
    transaction.on_commit(lambda: celery.enqueue("signin.run_export", export.pk))
    return export


def _progress(export_id: int, **fields) -> None:
    SignInExport.objects.filter(pk=export_id).update(**fields)


def _write(handle: IO[str], rows, file_format: str, export_id: int) -> int:
    count = 0
    if file_format == "json":
        handle.write("[")
        for count, row in enumerate(rows, start=1):
            handle.write(("," if count > 1 else "") + "\n" + json.dumps(row, separators=(",", ":")))
            if count % PROGRESS_EVERY == 0:
                _progress(export_id, done=count)
        handle.write("\n]\n")
        return count
    def csv_rows():
        yield signins.EXPORT_COLUMNS
        for row in rows:
            yield [None if row[c] is None else signins.csv_cell(c, row[c]) for c in signins.EXPORT_COLUMNS]

    for line_number, line in enumerate(csvexport.csv_lines(csv_rows())):
        handle.write(line)
        count = line_number
        if count and count % PROGRESS_EVERY == 0:
            _progress(export_id, done=count)
    return count


def _finish(export: SignInExport, **changes) -> SignInExport:
    with transaction.atomic():
        for name, value in changes.items():
            setattr(export, name, value)
        export.finished_at = timezone.now()
        export.save(update_fields=[*changes, "finished_at"])
        audit.record(actor=export.requested_by, action="signin.export_finish", target=export,
                     after={"status": export.status, "rows": export.done, "error": export.error[:200]})
    return export


def signin_export_run(export_id: int) -> SignInExport:
    """Write a queued export's file (what the Celery task calls): claimed by one conditional UPDATE, so a second
    delivery or a second worker does nothing; progress is committed as it goes, for the page's bar."""
    claimed = SignInExport.objects.filter(pk=export_id, status=SignInExport.Status.QUEUED).update(
        status=SignInExport.Status.RUNNING)
    export = SignInExport.objects.select_related("requested_by").get(pk=export_id)
    if not claimed:
        return export
    actor = export.requested_by
    if actor is None or not actor.is_active or not signins.can_view_signins(actor):
        return _finish(export, status=SignInExport.Status.FAILED,
                       error="The person who asked for the export may no longer read the sign-in log.")
    rows = rows_for(actor, export.filters, now=export.created_at)
    _progress(export.pk, total=rows.count())
    name = f"sign-ins-{export.pk}-{secrets.token_hex(12)}.{export.file_format}"
    path = export_dir() / name
    try:
        with path.open("w", encoding="utf-8", newline="") as handle:
            done = _write(handle, signins.export_rows(rows), export.file_format, export.pk)
    except Exception as crash:  # recorded, never lost; the half-written file goes
        logger.exception("sign-in export %s crashed", export_id)
        path.unlink(missing_ok=True)
        return _finish(export, status=SignInExport.Status.FAILED,
                       error=f"{type(crash).__name__}: {crash}\n{traceback.format_exc(limit=3)}"[:4000])
    export.refresh_from_db(fields=["total"])
    return _finish(export, status=SignInExport.Status.SUCCEEDED, done=done, total=max(export.total, done),
                   file_name=name)


def signin_export_download(*, actor: User, export: SignInExport) -> IO[bytes]:
    """The export's file, open for reading, once and for its requester only. The file's name is unlinked and the
    row marked downloaded in the same transaction as the audit event: a second request finds nothing."""
    with transaction.atomic():
        export = SignInExport.objects.select_for_update().get(pk=export.pk)
        rbac.require(actor is not None and actor.is_active and actor.pk == export.requested_by_id,
                     "Only the person who asked for this export can download it.")
        if export.downloaded_at is not None:
            raise ExportGone("This export was already downloaded, and its file deleted. Start a new export to "
                             "get the sign-ins again.")
        if export.status == SignInExport.Status.EXPIRED or export.expires_at <= timezone.now():
            raise ExportGone("This export expired and its file was deleted. Start a new export.")
        if export.status != SignInExport.Status.SUCCEEDED or not export.file_name:
            raise ExportGone("This export has no file to download.")
        path = export_dir() / export.file_name
        handle = path.open("rb")  # open before unlinking: the download reads the open file
        path.unlink(missing_ok=True)
        export.downloaded_at, export.file_name = timezone.now(), ""
        export.save(update_fields=["downloaded_at", "file_name"])
        audit.record(actor=actor, action="signin.export_download", target=export, after={"rows": export.done})
    return handle


@jobs.register("expire_sign_in_exports", "Delete the files of sign-in exports nobody downloaded in time.")
def expire_sign_in_exports() -> dict:
    """Idempotent: each expired export's file is deleted and its row marked expired (one audit event per run)."""
    now = timezone.now()
    with transaction.atomic():
        stale = list(SignInExport.objects.select_for_update(skip_locked=True)
                     .filter(expires_at__lte=now, downloaded_at__isnull=True)
                     .exclude(status=SignInExport.Status.EXPIRED))
        for export in stale:
            if export.file_name:
                (export_dir() / export.file_name).unlink(missing_ok=True)
        SignInExport.objects.filter(pk__in=[e.pk for e in stale]).update(status=SignInExport.Status.EXPIRED,
                                                                          file_name="")
        if stale:
            audit.record(actor=None, action="signin.export_expire", target_label="sign-in exports",
                         after={"exports": [e.pk for e in stale]})
    return {"expired": len(stale)}
