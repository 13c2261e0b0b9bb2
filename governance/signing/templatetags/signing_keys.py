"""``{% load signing_keys %}``: whether the navigation shows the signing-keys page to this user."""

from django import template

from governance.signing import rotation

register = template.Library()


@register.filter
def may_view_signing_keys(user) -> bool:
    return rotation.can_view_signing_keys(user)
