"""The inputs a blueprint's manifest declares for its skills (``SkillGroups[].Skills[].Inputs``), read as typed fields.

Security Copilot manifests give each input a ``Name``, a ``Description``, a ``DefaultValue`` and ``Required``. The
portal also reads three optional keys, so a run's inputs are checked before anything is queued or any token issued:

- ``Type``: ``string`` (the default), ``integer``, ``number`` or ``boolean``; an input without one whose
  ``DefaultValue`` is a YAML number is a ``number``;
- ``Minimum`` and ``Maximum``: limits of a number (inclusive), or of a text's length;
- ``DisplayName``: the label shown to people (otherwise the name, its words separated: "Expiring within days").

``check`` answers in the words of the form's user: the label, what is expected and what was entered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TYPES = ("string", "integer", "number", "boolean")
TRUE_WORDS, FALSE_WORDS = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}
MAX_TEXT = 2000


def humanise(name: str) -> str:
    """``ExpiringWithinDays`` → "Expiring within days"; ``min_cvss_score`` → "Min cvss score"."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|[_\-.]+", " ", name).split()
    text = " ".join(w if w.isupper() and len(w) > 1 else w.lower() for w in words)
    return text[:1].upper() + text[1:]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


@dataclass(frozen=True)
class DeclaredInput:
    """One declared input: its name (the key the agent receives), label, description, type, limits and default."""

    name: str
    label: str
    description: str
    type: str
    minimum: float | None
    maximum: float | None
    required: bool
    default: str

    @classmethod
    def from_manifest(cls, item: dict) -> DeclaredInput:
        name = str(item.get("Name") or "").strip()
        default = item.get("DefaultValue")
        declared_type = str(item.get("Type") or "").strip().lower()
        if declared_type not in TYPES:
            declared_type = "number" if _number(default) is not None else "string"
        label = str(item.get("DisplayName") or "").strip() or humanise(name)
        return cls(name=name, label=label, description=str(item.get("Description") or "").strip(),
                   type=declared_type, minimum=_number(item.get("Minimum")), maximum=_number(item.get("Maximum")),
                   required=item.get("Required") is True,
                   default="" if default is None else str(default).lower() if isinstance(default, bool)
                   else str(default))

    def _limits(self, unit: str) -> str:
        def show(n):
            return f"{n:g}"
        if self.minimum is not None and self.maximum is not None:
            return f" from {show(self.minimum)} to {show(self.maximum)}{unit}"
        if self.minimum is not None:
            return f" of at least {show(self.minimum)}{unit}"
        if self.maximum is not None:
            return f" of at most {show(self.maximum)}{unit}"
        return ""

    def expected(self) -> str:
        """What the input takes, in words ("a whole number from 1 to 365")."""
        if self.type == "integer":
            return "a whole number" + self._limits("")
        if self.type == "number":
            return "a number" + self._limits("")
        if self.type == "boolean":
            return "yes or no"
        return "text" + self._limits(" characters")

    def check(self, value: str) -> str:
        """Why this (trimmed, non-empty) value does not fit, in the user's words; "" when it does."""
        shown = value if len(value) <= 40 else value[:40] + "…"
        wrong = f"{self.label} must be {self.expected()} (you entered “{shown}”)."
        if self.type == "boolean":
            return "" if value.lower() in TRUE_WORDS | FALSE_WORDS else wrong
        if self.type in ("integer", "number"):
            pattern = r"[+-]?\d+" if self.type == "integer" else r"[+-]?(\d+(\.\d*)?|\.\d+)"
            if not re.fullmatch(pattern, value):
                return wrong
            number = float(value)
            if (self.minimum is not None and number < self.minimum) or (
                    self.maximum is not None and number > self.maximum):
                return wrong
            return ""
        if (self.minimum is not None and len(value) < self.minimum) or len(value) > (
                self.maximum if self.maximum is not None else MAX_TEXT):
            return f"{self.label} must be {self.expected() if self.maximum is not None else 'under 2,000 characters'}."
        return ""


def declared_inputs(items) -> list[DeclaredInput]:
    """The declared inputs of a blueprint (``Blueprint.inputs``), first declaration of each name."""
    found: dict[str, DeclaredInput] = {}
    for item in items or ():
        if isinstance(item, dict):
            declared = DeclaredInput.from_manifest(item)
            if declared.name and declared.name not in found:
                found[declared.name] = declared
    return list(found.values())


def manifest_problems(item: dict, base: str) -> list[str]:
    """Problems with the optional ``Type``/``Minimum``/``Maximum`` keys of one declared input, for the importer."""
    problems = []
    if item.get("Type") is not None and str(item["Type"]).strip().lower() not in TYPES:
        problems.append(f"{base}.Type must be one of {', '.join(TYPES)} (found {str(item['Type'])[:40]!r})")
    for key in ("Minimum", "Maximum"):
        if item.get(key) is not None and _number(item[key]) is None:
            problems.append(f"{base}.{key} must be a number")
    low, high = _number(item.get("Minimum")), _number(item.get("Maximum"))
    if low is not None and high is not None and low > high:
        problems.append(f"{base}.Minimum must not be more than its Maximum")
    return problems
