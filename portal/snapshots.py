"""Before/after snapshots for audit events: plain dicts of the fields a change touches."""

from __future__ import annotations

from typing import Any

from django.db import models


def snapshot(obj: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    """Field values of ``obj``; foreign keys are recorded by id (``manager`` → ``manager_id``)."""
    data: dict[str, Any] = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if field.is_relation and field.many_to_one:
            data[field.attname] = getattr(obj, field.attname)
        else:
            data[name] = getattr(obj, name)
    return data
