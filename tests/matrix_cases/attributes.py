"""Permission-matrix cases for attribute sets (R20, protected attributes; appended to
``tests.permission_matrix.CASES``).

Everyone signed in reads which keys are protected (owners need to know which attributes are not theirs to set);
only Global Administrators create and change sets. ``inherited_owner`` (a Security Administrator) gets 403.
"""

from __future__ import annotations

from django.urls import reverse

from tests.permission_matrix import LOGIN, Case, expect


def _set(w):
    from agents.models import AttributeSet

    return AttributeSet.objects.get_or_create(name="Governance", defaults={"protected": True})[0]


def _protected_tier(w):
    """Put ``tier`` in a protected set, then post a change of it."""
    from agents import attributes

    attributes.attribute_set_save(actor=None, name="Governance", protected=True, keys=["tier"])
    return {"key": "tier", "value": "unrestricted"}


READ = expect(LOGIN, 200, 200, 200, 200, 200)
MANAGE_FORM = expect(LOGIN, 403, 403, 403, 200, 403)
MANAGE = expect(LOGIN, 403, 403, 403, 302, 403)

CASES: list = [
    Case("agent-attribute", "POST", lambda w: reverse("agent-attribute", args=[w.agent.pk]),
         expect(LOGIN, 403, 302, 302, 302, 404), data=lambda w: {"key": "team", "remove": "1"},
         label="agent-attribute remove"),
    Case("agent-attribute", "POST", lambda w: reverse("agent-attribute", args=[w.agent.pk]),
         expect(LOGIN, 403, 403, 403, 302, 404), data=_protected_tier,
         label="agent-attribute protected key (Global and Attribute Assignment Administrators only)"),
    Case("attribute-set-list", "GET", lambda w: reverse("attribute-set-list"), READ),
    Case("attribute-set-create", "GET", lambda w: reverse("attribute-set-create"), MANAGE_FORM),
    Case("attribute-set-create", "POST", lambda w: reverse("attribute-set-create"), MANAGE,
         data=lambda w: {"name": "Clearance", "protected": "on", "keys": "clearance"}),
    Case("attribute-set-edit", "GET", lambda w: reverse("attribute-set-edit", args=[_set(w).pk]), MANAGE_FORM),
    Case("attribute-set-edit", "POST", lambda w: reverse("attribute-set-edit", args=[_set(w).pk]), MANAGE,
         data=lambda w: {"name": "Governance", "protected": "on", "keys": "tier"}),
]
