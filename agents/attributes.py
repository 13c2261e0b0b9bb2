"""Attribute sets and who may assign which custom security attribute (R20, "Protected attributes").

A key is *protected* when it belongs to a protected attribute set, or when a conditional-access policy matches on
it (the registry asks through ``signals.attribute_keys_in_rules``, never importing governance): a policy is what
makes an attribute decide access, so the people the policy constrains may not choose its value. Protected
attributes are assigned, changed and removed only by the people ``portal.rbac.can_assign_protected_attributes``
names; other attributes by the agent's managers as well. Every path that writes an attribute (the agent page, set-up
through the wizard, the API and bulk files) asks this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from agents import policy, signals
from agents.models import Agent, AttributeDefinition, AttributeSet
from portal import audit, rbac
from portal.models import User

ATTRIBUTE_KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class Protection:
    """Where an attribute key belongs and whether it is protected, with the reason in words."""

    key: str
    attribute_set: str = ""  # "" when the key is in no set
    set_protected: bool = False
    policies: tuple[str, ...] = ()  # the conditional-access policies that match on the key

    @property
    def protected(self) -> bool:
        return self.set_protected or bool(self.policies)

    @property
    def reason(self) -> str:
        reasons = []
        if self.set_protected:
            reasons.append(f"it is in the protected attribute set {self.attribute_set}")
        if self.policies:
            reasons.append(f"conditional access matches on it ({', '.join(self.policies)})")
        return " and ".join(reasons)


def attribute_protection(keys: Iterable[str]) -> dict[str, Protection]:
    """Each key's set and protection (one query for the sets, one per app that answers for its rules)."""
    keys = sorted(set(keys))
    if not keys:
        return {}
    in_sets = {key: (name, protected) for key, name, protected in AttributeDefinition.objects.filter(key__in=keys)
               .values_list("key", "attribute_set__name", "attribute_set__protected")}
    in_rules: dict[str, set[str]] = {}
    for answer in signals.answers(signals.attribute_keys_in_rules):
        for key, names in answer.items():
            in_rules.setdefault(key, set()).update(names)
    return {key: Protection(key, *in_sets.get(key, ("", False)), policies=tuple(sorted(in_rules.get(key, ()))))
            for key in keys}


def protected_keys() -> list[str]:
    """Every protected key: those of protected sets and those conditional access matches on."""
    keys = set(AttributeDefinition.objects.filter(attribute_set__protected=True).values_list("key", flat=True))
    for answer in signals.answers(signals.attribute_keys_in_rules):
        keys.update(answer)
    return sorted(keys)


def refused_keys(actor: User | None, keys: Iterable[str]) -> list[Protection]:
    """The protected keys among ``keys`` that ``actor`` may not assign (none for the system, ``actor=None``)."""
    if actor is None or rbac.can_assign_protected_attributes(actor):
        return []
    return [p for p in attribute_protection(keys).values() if p.protected]


def refusal_message(refused: Sequence[Protection]) -> str:
    return "; ".join(f"{p.key} is a protected attribute: {p.reason}" for p in refused) + \
        ". Only Global Administrators and Attribute Assignment Administrators assign, change or remove it."


def can_edit_attributes(user: User, agent: Agent) -> bool:
    """Who may change an agent's attributes at all: its managers (unprotected keys) and the assigners of protected
    attributes (every key)."""
    return policy.can_manage_agent(user, agent) or rbac.can_assign_protected_attributes(user)


def require_assignable(*, actor: User | None, agent: Agent, keys: Iterable[str]) -> None:
    """Raise PermissionDenied unless ``actor`` may assign, change or remove these keys on ``agent`` (R20)."""
    if actor is None:
        return
    if not can_edit_attributes(actor, agent):
        raise PermissionDenied("Only owners change an agent's attributes.")
    refused = refused_keys(actor, keys)
    if refused:
        raise PermissionDenied(refusal_message(refused))


# --- attribute sets (Global Administrators) ----------------------------------------------------------------------


def _snapshot(attribute_set: AttributeSet) -> dict:
    return {"name": attribute_set.name, "description": attribute_set.description,
            "protected": attribute_set.protected,
            "keys": sorted(attribute_set.definitions.values_list("key", flat=True))}


def attribute_sets() -> list[AttributeSet]:
    """Every set with its keys (two queries)."""
    return list(AttributeSet.objects.prefetch_related("definitions").order_by("name"))


@transaction.atomic
def attribute_set_save(*, actor: User | None, name: str, description: str = "", protected: bool = True,
                       keys: Sequence[str] = (), attribute_set: AttributeSet | None = None) -> AttributeSet:
    """Create or change an attribute set and the keys it holds (Global Administrators); one audit event.

    A key belongs to at most one set: a key already in another set is refused until it leaves that set."""
    if actor is not None and not rbac.can_manage_attribute_sets(actor):
        raise PermissionDenied("Only Global Administrators manage attribute sets.")
    keys = sorted({k.strip() for k in keys if k.strip()})
    problems = [f"'{k}' is not a valid attribute name (a letter, then letters, digits, . _ -)."
                for k in keys if not ATTRIBUTE_KEY_RE.match(k)]
    name = (name or "").strip()
    if not name or len(name) > 64:
        problems.append("Give the set a name of at most 64 characters.")
    before = None
    if attribute_set is None:
        attribute_set = AttributeSet()
    else:
        attribute_set = AttributeSet.objects.select_for_update().get(pk=attribute_set.pk)
        before = _snapshot(attribute_set)
    if AttributeSet.objects.filter(name__iexact=name).exclude(pk=attribute_set.pk).exists():
        problems.append(f"An attribute set called '{name}' already exists.")
    elsewhere = AttributeDefinition.objects.filter(key__in=keys).exclude(attribute_set_id=attribute_set.pk) \
        .select_related("attribute_set")
    problems += [f"'{d.key}' is already in the set {d.attribute_set.name}; remove it there first." for d in elsewhere]
    if problems:
        raise ValidationError(problems)
    attribute_set.name, attribute_set.description, attribute_set.protected = name, description.strip(), protected
    attribute_set.save()
    attribute_set.definitions.exclude(key__in=keys).delete()
    present = set(attribute_set.definitions.values_list("key", flat=True))
    AttributeDefinition.objects.bulk_create([AttributeDefinition(key=k, attribute_set=attribute_set)
                                             for k in keys if k not in present])
    audit.record(actor=actor, action="attribute_set.update" if before else "attribute_set.create",
                 target=attribute_set, before=before, after=_snapshot(attribute_set))
    return attribute_set
