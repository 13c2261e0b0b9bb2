"""Insert many rows of one model from plain tuples, without a model instance per row (docs/design.md,
"Bulk inserts without model instances").

``Model.objects.bulk_create`` builds and prepares an instance per row and, on PostgreSQL, binds one array per
column; for tens of thousands of rows written in one request or job (a bulk file of agents) that Python work is
most of the time. ``insert_rows`` takes the values of some columns as tuples and writes them in one statement:
on PostgreSQL the rows travel as one JSON text parameter read by ``json_populate_recordset`` (parsed by the
server, typed by the table's own row type); elsewhere it is ``bulk_create``, unchanged.

Every other concrete column gets what ``bulk_create`` would give it: the field's default (a callable default is
called per row), and a column with a database default is left to the database. Values are given as the database
stores them: ``attname`` columns (``agent_id``, not ``agent``), strings for character fields (a choices member is
a string), aware datetimes, JSON-ready values for JSON fields. No signals are sent, as with ``bulk_create``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime, time
from decimal import Decimal
from operator import attrgetter

from django.db import connections, router
from django.db.models import NOT_PROVIDED, Model

BATCH = 2000


def _default(value):
    """JSON for the values ``json.dumps`` does not know; PostgreSQL reads each back into its column's type."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot be written by insert_rows")


def insert_rows(model: type[Model], columns: Sequence[str], rows: Sequence[Sequence], *,
                returning_pk: bool = False, batch_size: int = BATCH) -> list[int]:
    """Insert ``rows`` (one tuple of values per row, in the order of ``columns``, which are attnames) into
    ``model``'s table in one statement per ``batch_size`` rows. Returns the new primary keys in the order of
    ``rows`` when ``returning_pk``, else an empty list."""
    if not rows:
        return []
    alias = router.db_for_write(model)
    connection = connections[alias]
    meta = model._meta
    fields = {f.attname: f for f in meta.concrete_fields}
    unknown = [c for c in columns if c not in fields]
    if unknown:
        raise ValueError(f"{meta.label} has no column(s) {', '.join(unknown)}")
    if connection.vendor != "postgresql":
        objects = model.objects.using(alias).bulk_create(
            [model(**dict(zip(columns, row, strict=True))) for row in rows], batch_size=batch_size)
        return [obj.pk for obj in objects] if returning_pk else []

    # Columns not given: the field's default, as bulk_create would write it; a database default is left alone.
    constant, per_row = {}, {}
    for field in meta.concrete_fields:
        if field.attname in columns or field is meta.auto_field:
            continue
        if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            continue
        if field.has_default() and callable(field.default):
            per_row[field.column] = field
        else:
            constant[field.column] = field.get_default()
    names = [fields[c].column for c in columns]
    table = connection.ops.quote_name(meta.db_table)
    targets = [*names, *constant, *per_row]
    quoted = ", ".join(connection.ops.quote_name(name) for name in targets)
    pk = connection.ops.quote_name(meta.pk.column)
    sql = (f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM json_populate_recordset(NULL::{table}, %s)"
           + (f" RETURNING {pk}" if returning_pk else ""))
    pks: list[int] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), batch_size):
            payload = []
            for row in rows[start:start + batch_size]:
                record = dict(zip(names, row, strict=True))
                record.update(constant)
                for column, field in per_row.items():
                    record[column] = field.get_default()
                payload.append(record)
            cursor.execute(sql, [json.dumps(payload, default=_default, ensure_ascii=False)])
            if returning_pk:
                # One statement's RETURNING lists rows in the order they were inserted, the order of the JSON
                # array, as bulk_create relies on for its own multi-row inserts.
                pks += [row[0] for row in cursor.fetchall()]
    return pks


def insert_objects(objects: Sequence[Model], *, batch_size: int = BATCH) -> list[Model]:
    """``bulk_create`` for new, unsaved instances of one model whose callers need the instances afterwards: their
    field values are read as they stand and written by ``insert_rows``, then each gets its primary key and is
    marked saved, as ``bulk_create`` does. A model with automatic dates or database defaults, instances that
    already have a key, and other databases go through ``bulk_create`` itself."""
    if not objects:
        return []
    model = type(objects[0])
    meta = model._meta
    alias = router.db_for_write(model)
    fields = [f for f in meta.concrete_fields if f is not meta.auto_field]
    plain = (connections[alias].vendor == "postgresql" and meta.auto_field is not None
             and not any(getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
                         or getattr(f, "db_default", NOT_PROVIDED) is not NOT_PROVIDED for f in fields)
             and all(obj.pk is None for obj in objects))
    if not plain:
        return model.objects.using(alias).bulk_create(objects, batch_size=batch_size)
    columns = [f.attname for f in fields]
    values = attrgetter(*columns)
    pks = insert_rows(model, columns, [values(obj) for obj in objects], returning_pk=True, batch_size=batch_size)
    for obj, pk in zip(objects, pks, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = alias
    return list(objects)
