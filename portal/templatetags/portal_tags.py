import json

from django import template

register = template.Library()


@register.filter
def as_json(value) -> str:
    """Render a before/after snapshot as compact JSON (autoescaped by the template)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


@register.filter(expects_localtime=True)
def when(value, seconds: str = "") -> str:
    """A time shown to people, always with its zone: ``2026-12-01 04:50 UTC`` (``when:"s"`` adds seconds).

    Every page, notification and e-mail formats times through ``portal.timefmt.when`` or this filter, so one instant
    reads the same everywhere."""
    from portal.timefmt import when as format_when

    return format_when(value, seconds=bool(seconds))
