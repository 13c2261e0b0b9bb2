"""``{% chart some_chart %}`` draws a ``portal.charts.Chart`` as inline SVG with its table (no script, no CDN)."""

from django import template
from django.template.loader import get_template

register = template.Library()


@register.simple_tag
def chart(value) -> str:
    """The figure for ``value`` (a ``portal.charts.Chart``); nothing when there is no chart."""
    if value is None:
        return ""
    return get_template(value.template).render({"chart": value})
