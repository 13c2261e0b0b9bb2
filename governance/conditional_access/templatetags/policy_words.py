"""``{{ verdict.state|policy_state }}``: a policy's state in words ("Report-only"), never its stored value."""

from django import template

from governance.conditional_access.choices import PolicyState

register = template.Library()


@register.filter
def policy_state(value) -> str:
    try:
        return PolicyState(value).label
    except ValueError:
        return str(value or "")
