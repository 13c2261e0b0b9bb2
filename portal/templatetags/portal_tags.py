import json

from django import template

register = template.Library()


@register.filter
def as_json(value) -> str:
    """Render a before/after snapshot as compact JSON (autoescaped by the template)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))
