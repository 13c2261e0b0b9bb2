"""Security Copilot agent manifests: parse, import as a blueprint version, export.

A manifest (YAML or JSON) has a ``Descriptor``, ``AgentDefinitions`` (publisher, products, required skillsets,
triggers) and ``SkillGroups`` whose skills name the ``ChildSkills`` the agent calls. Importing one makes a
``Blueprint`` version whose required permissions are the union of what the catalog says those skills need; a
skill the catalog does not know leaves the blueprint incomplete until an owner maps it
(``catalog.skill_resolve_unknown``). Re-importing the same manifest with the same outcome changes nothing;
anything else makes the next version, so a complete version's permission set never changes (R3, R15).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from agents import catalog
from agents.choices import PublisherKind
from agents.inputs import manifest_problems as declared_input_problems
from agents.models import Blueprint, BlueprintSkill, Publisher
from portal import audit
from portal.models import Permission, User

MAX_BYTES = 1024 * 1024
MAX_VALUES = 100_000  # bounds what YAML aliases can expand to
MAX_DEPTH = 64
MAX_NAME = Blueprint._meta.get_field("name").max_length
MAX_DISPLAY_NAME = Blueprint._meta.get_field("display_name").max_length
MAX_PUBLISHER = Publisher._meta.get_field("name").max_length
MAX_SKILL_NAME = BlueprintSkill._meta.get_field("name").max_length
MAX_PROBLEMS = 20
CUSTOM_PUBLISHER = "Custom"  # what Security Copilot writes for an organisation's own agents

#: Key order of an exported manifest (then any other keys as stored): PostgreSQL's jsonb does not keep the
#: original order, so export puts the familiar keys first whatever the database.
KEY_ORDER = ("Descriptor", "AgentDefinitions", "SkillGroups", "Name", "DisplayName", "Description", "Icon",
             "Publisher", "Product", "RequiredSkillsets", "AgentSingleInstanceConstraint", "Triggers",
             "DefaultPollPeriodSeconds", "ProcessSkill", "Format", "Skills", "Inputs", "DefaultValue", "Required",
             "Type", "Minimum", "Maximum", "Settings", "ChildSkills", "ExecutorUrl")

LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def executor_url_problem(value: Any) -> str:
    """Why an ``ExecutorUrl`` is unusable, or "". Executors are reached over HTTPS; plain HTTP only on loopback
    (an executor on the portal's own machine)."""
    if not isinstance(value, str) or not value.strip():
        return "must be a URL"
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"must be an https:// URL (found {value.strip()[:80]!r})"
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        return "must use https:// (plain http is only accepted for an executor on loopback)"
    if parts.username or parts.password:
        return "must not carry credentials"
    if len(value.strip()) > 500:
        return "is longer than 500 characters"
    return ""


class ManifestError(ValidationError):
    """A manifest that cannot be imported; each message names what is wrong and where. Nothing was written."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self.problems, code="invalid_manifest")


@dataclass
class ImportResult:
    """What ``blueprint_import`` did: the blueprint version, whether it is new, and the permission diff."""

    blueprint: Blueprint
    created: bool
    previous: Blueprint | None = None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unknown_skills: list[str] = field(default_factory=list)


# --- parsing --------------------------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / MAX_BYTES:.1f} MB"


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value[:40]!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _format_of(filename: str, text: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    return "json" if text.lstrip().startswith("{") else "yaml"


def _load(text: str, filename: str) -> Any:
    if _format_of(filename, text) == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise ManifestError(f"the file is not valid JSON: {error.msg} at line {error.lineno}, "
                                f"column {error.colno}") from None
        except RecursionError:
            raise ManifestError(f"the file is nested more than {MAX_DEPTH} levels deep") from None
        except ValueError:  # int() refuses numbers with thousands of digits
            raise ManifestError("the file is not valid JSON: a number in it has too many digits") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ManifestError(f"the file is not valid YAML: {_yaml_problem(error)}") from None
    except RecursionError:
        raise ManifestError(f"the file is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError:
        raise ManifestError("the file is not valid YAML: a number in it has too many digits") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's problem, its context and the line they are on, as one sentence."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    mark, context_mark = getattr(error, "problem_mark", None), getattr(error, "context_mark", None)
    text = f"{context}, {problem}" if context else problem
    if mark is not None:
        text += f" at line {mark.line + 1}, column {mark.column + 1}"
        if context_mark is not None and context_mark.line != mark.line:
            text += f" (it started at line {context_mark.line + 1})"
    elif context_mark is not None:
        text += f" at line {context_mark.line + 1}, column {context_mark.column + 1}"
    return text


def _plain(value: Any, path: str, depth: int, budget: list[int]) -> Any:
    """A plain JSON tree of the loaded document (fresh copies: YAML aliases cannot expand past ``MAX_VALUES``)."""
    budget[0] += 1
    if budget[0] > MAX_VALUES:
        raise ManifestError(f"the manifest holds more than {MAX_VALUES:,} values (are YAML aliases expanding?)")
    if depth > MAX_DEPTH:
        where = path if len(path) <= 60 else path[:60] + "…"
        raise ManifestError(f"{where or 'the manifest'} is nested more than {MAX_DEPTH} levels deep")
    where = path or "the top level"
    if isinstance(value, dict):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ManifestError(f"{where} has the key {key!r}; keys must be text")
            plain[key] = _plain(item, f"{path}.{key}" if path else key, depth + 1, budget)
        return plain
    if isinstance(value, list):
        return [_plain(item, f"{path}[{i}]", depth + 1, budget) for i, item in enumerate(value)]
    if isinstance(value, str):
        if "\x00" in value:
            raise ManifestError(f"{where} contains a NUL character")
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise ManifestError(f"{where} is {value}; numbers must be finite")
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()  # an unquoted YAML date: kept as the text it was written as
    raise ManifestError(f"{where} holds a {type(value).__name__} value, which a manifest cannot contain")


class _Checker:
    """Collects structural problems, each naming its path (``AgentDefinitions[0].Triggers[0]…``)."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, message: str) -> None:
        self.problems.append(message)

    def text(self, mapping: dict, base: str, key: str, *, required: bool = False, max_length: int | None = None):
        value = mapping.get(key)
        if value is None:
            if required:
                self.add(f"{base}.{key} is missing")
            return
        if not isinstance(value, str):
            self.add(f"{base}.{key} must be text (found {_kind(value)})")
        elif required and not value.strip():
            self.add(f"{base}.{key} is empty")
        elif max_length and len(value.strip()) > max_length:
            self.add(f"{base}.{key} is longer than {max_length} characters")

    def texts(self, mapping: dict, base: str, key: str, *, what: str = "names",
              max_length: int | None = None) -> None:
        value = mapping.get(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.add(f"{base}.{key} must be a list of {what} (found {_kind(value)})")
            return
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.add(f"{base}.{key}[{i}] must be a {what.rstrip('s')} (found {_kind(item)})")
            elif max_length and len(item.strip()) > max_length:
                self.add(f"{base}.{key}[{i}] is longer than {max_length} characters")

    def mappings(self, mapping: dict, base: str, key: str) -> list[tuple[str, dict]]:
        """The list under ``key`` as (path, mapping) pairs; a missing or null list is empty."""
        value = mapping.get(key)
        path = f"{base}.{key}" if base else key
        if value is None:
            return []
        if not isinstance(value, list):
            self.add(f"{path} must be a list (found {_kind(value)})")
            return []
        pairs = []
        for i, item in enumerate(value):
            if isinstance(item, dict):
                pairs.append((f"{path}[{i}]", item))
            else:
                self.add(f"{path}[{i}] must be a mapping (found {_kind(item)})")
        return pairs


def _check_structure(manifest: Any) -> list[str]:
    if not isinstance(manifest, dict):
        return [f"the top level must be a mapping with Descriptor, AgentDefinitions and SkillGroups "
                f"(found {_kind(manifest)})"]
    check = _Checker()
    descriptor = manifest.get("Descriptor")
    if descriptor is None:
        check.add("Descriptor is missing (it gives the agent's Name, DisplayName and Description)")
    elif not isinstance(descriptor, dict):
        check.add(f"Descriptor must be a mapping (found {_kind(descriptor)})")
    else:
        check.text(descriptor, "Descriptor", "Name", required=True, max_length=MAX_NAME)
        if isinstance(descriptor.get("Name"), str) and "@" in descriptor["Name"]:
            check.add("Descriptor.Name cannot contain '@' (bulk files write blueprints as Name@version)")
        check.text(descriptor, "Descriptor", "DisplayName", max_length=MAX_DISPLAY_NAME)
        check.text(descriptor, "Descriptor", "Description")

    definitions = manifest.get("AgentDefinitions")
    if definitions is None:
        check.add("AgentDefinitions is missing (an agent manifest defines at least one agent)")
    elif not isinstance(definitions, list):
        check.add(f"AgentDefinitions must be a list of mappings (found {_kind(definitions)})")
    elif not definitions:
        check.add("AgentDefinitions is empty (an agent manifest defines at least one agent)")
    elif not all(isinstance(d, dict) for d in definitions):
        index = next(i for i, d in enumerate(definitions) if not isinstance(d, dict))
        check.add(f"AgentDefinitions must be a list of mappings (AgentDefinitions[{index}] is "
                  f"{_kind(definitions[index])})")
    else:
        for base, definition in check.mappings(manifest, "", "AgentDefinitions"):
            check.text(definition, base, "Name")
            check.text(definition, base, "DisplayName", max_length=MAX_DISPLAY_NAME)
            check.text(definition, base, "Description")
            check.text(definition, base, "Publisher", max_length=MAX_PUBLISHER)
            if isinstance(definition.get("Product"), list):
                check.texts(definition, base, "Product", what="product names")
            else:
                check.text(definition, base, "Product")
            check.texts(definition, base, "RequiredSkillsets", what="skillset names")
            if definition.get("ExecutorUrl") is not None:
                problem = executor_url_problem(definition.get("ExecutorUrl"))
                if problem:
                    check.add(f"{base}.ExecutorUrl {problem}")
            for trigger_base, trigger in check.mappings(definition, base, "Triggers"):
                check.text(trigger, trigger_base, "Name")
                check.text(trigger, trigger_base, "ProcessSkill")
                period = trigger.get("DefaultPollPeriodSeconds")
                if period is not None and (isinstance(period, bool) or not isinstance(period, int) or period < 0):
                    check.add(f"{trigger_base}.DefaultPollPeriodSeconds must be a whole number ≥ 0 "
                              f"(found {_kind(period)})")

    groups = manifest.get("SkillGroups")
    if groups is not None and not isinstance(groups, list):
        check.add(f"SkillGroups must be a list (found {_kind(groups)})")
    else:
        for group_base, group in check.mappings(manifest, "", "SkillGroups"):
            check.text(group, group_base, "Format")
            for skill_base, skill in check.mappings(group, group_base, "Skills"):
                check.text(skill, skill_base, "Name", required=True, max_length=MAX_SKILL_NAME)
                check.text(skill, skill_base, "DisplayName")
                check.text(skill, skill_base, "Description")
                for input_base, item in check.mappings(skill, skill_base, "Inputs"):
                    check.text(item, input_base, "Name", required=True)
                    check.text(item, input_base, "Description")
                    if item.get("Required") is not None and not isinstance(item["Required"], bool):
                        check.add(f"{input_base}.Required must be true or false (found {_kind(item['Required'])})")
                    if isinstance(item.get("DefaultValue"), dict | list):
                        check.add(f"{input_base}.DefaultValue must be a single value (found "
                                  f"{_kind(item['DefaultValue'])})")
                    for problem in declared_input_problems(item, input_base):
                        check.add(problem)
                if skill.get("Settings") is not None and not isinstance(skill["Settings"], dict):
                    check.add(f"{skill_base}.Settings must be a mapping (found {_kind(skill['Settings'])})")
                check.texts(skill, skill_base, "ChildSkills", what="skill names", max_length=MAX_SKILL_NAME)
    return check.problems


def parse_manifest(data: bytes, filename: str) -> dict:
    """Read a Security Copilot manifest (YAML, or JSON for ``.json`` files and text starting with ``{``).

    Raises ``ManifestError`` naming each problem and where it is: a file over 1 MB, text that is not UTF-8,
    invalid YAML/JSON (with its line), a top level that is not a mapping, a missing ``Descriptor`` or
    ``Descriptor.Name``, and wrongly typed fields such as ``AgentDefinitions``, ``SkillGroups``, ``Skills``,
    ``Inputs``, ``ChildSkills`` or ``Triggers[].DefaultPollPeriodSeconds``. Returns the manifest as plain JSON data.
    """
    if isinstance(data, str):
        data = data.encode()
    data = bytes(data)
    if len(data) > MAX_BYTES:
        raise ManifestError(f"the file is {_size(len(data))}; manifests are at most 1 MB")
    if not data.strip():
        raise ManifestError("the file is empty")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ManifestError(f"the file is not UTF-8 text (byte 0x{data[error.start]:02x} at position "
                            f"{error.start}); save it as UTF-8") from None
    manifest = _plain(_load(text, filename), "", 0, [0])
    problems = _check_structure(manifest)
    if problems:
        more = len(problems) - MAX_PROBLEMS
        raise ManifestError(problems[:MAX_PROBLEMS] + ([f"… and {more} more problems"] if more > 0 else []))
    return manifest


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's canonical JSON (sorted keys, no spaces): equal for equal content in any format."""
    canonical = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- what a manifest says -------------------------------------------------------------------------------------


def _unique(values) -> list[str]:
    return list(dict.fromkeys(v for v in (v.strip() for v in values) if v))


def _definitions(manifest: dict) -> list[dict]:
    return manifest.get("AgentDefinitions") or []


def _skills(manifest: dict) -> list[tuple[dict, dict]]:
    return [(group, skill) for group in manifest.get("SkillGroups") or [] for skill in group.get("Skills") or []]


def _products(manifest: dict) -> list[str]:
    """``Product`` may list several products in one string ("Microsoft Purview, Microsoft Entra")."""
    found: list[str] = []
    for definition in _definitions(manifest):
        product = definition.get("Product")
        for text in product if isinstance(product, list) else [product or ""]:
            found += text.split(",")
    return _unique(found)


def _child_skill_names(manifest: dict) -> list[str]:
    """Every skill the manifest's skills call, in order. A child that is another agent-format skill defined in
    this manifest is not a catalog skill: its own children are collected instead."""
    skills = _skills(manifest)
    local_agents = {skill["Name"].strip() for group, skill in skills
                    if str(group.get("Format") or "").strip().lower() == "agent"}
    names = _unique(child for _group, skill in skills for child in skill.get("ChildSkills") or [])
    return [name for name in names if name not in local_agents]


def _publisher_of(manifest: dict) -> tuple[str, str]:
    """The first agent definition's ``Publisher``: "Microsoft", "Custom" (the organisation) or a partner's name."""
    definitions = _definitions(manifest)
    name = str((definitions[0].get("Publisher") if definitions else None) or "").strip() or CUSTOM_PUBLISHER
    if name.lower() == "microsoft":
        return "Microsoft", PublisherKind.MICROSOFT
    if name.lower() == CUSTOM_PUBLISHER.lower():
        return CUSTOM_PUBLISHER, PublisherKind.ORGANISATION
    return name, PublisherKind.PARTNER


def _first_text(*values: Any) -> str:
    return next((v.strip() for v in values if isinstance(v, str) and v.strip()), "")


# --- import and export ----------------------------------------------------------------------------------------


@transaction.atomic
def blueprint_import(*, actor: User | None, data: bytes, filename: str,
                     publisher_kind: str | None = None) -> ImportResult:
    """Import a manifest as the next version of its blueprint.

    Members of any workspace and directory administrators import (``catalog.can_import_manifests``); only a Global
    Administrator imports as Microsoft-published (``catalog.require_microsoft_trust``). A malformed file
    raises ``ManifestError`` and writes nothing. The publisher kind comes from ``AgentDefinitions[0].Publisher``
    ("Microsoft" → microsoft, "Custom" → organisation, any other name → partner) unless ``publisher_kind`` says
    otherwise; it decides whether an agent identity may be offered (R2) and whether approval is needed (R14).
    Each ``ChildSkills`` name is resolved in the catalog (a skill of the manifest's ``RequiredSkillsets`` first);
    the required permissions are the union of the resolved skills' permissions and the blueprint is complete
    only when every skill resolved. Importing what the latest version already is (same manifest digest,
    permission set and publisher kind) returns it unchanged; anything else creates version latest + 1, so a
    complete version's permission set is never changed (R3, R15). One audit event per new version (R23).
    """
    if not catalog.can_import_manifests(actor):
        raise PermissionDenied("Only members of a workspace and directory administrators import agent manifests.")
    if publisher_kind is not None and publisher_kind not in PublisherKind.values:
        raise ValidationError(f"'{publisher_kind}' is not a publisher kind ({', '.join(PublisherKind.values)}).")
    manifest = parse_manifest(data, filename)
    descriptor = manifest["Descriptor"]
    definitions = _definitions(manifest)
    first = definitions[0] if definitions else {}
    name = descriptor["Name"].strip()
    digest = manifest_digest(manifest)
    publisher_name, named_kind = _publisher_of(manifest)
    kind = publisher_kind or named_kind
    catalog.require_microsoft_trust(actor, kind)
    required_skillsets = _unique(s for d in definitions for s in d.get("RequiredSkillsets") or [])
    child_names = _child_skill_names(manifest)
    resolved = catalog.skills_resolve(child_names, required_skillsets)
    unknown = [n for n in child_names if resolved[n] is None]
    permissions = list(Permission.objects.filter(skills__in={s.pk for s in resolved.values() if s is not None})
                       .distinct().order_by("name"))
    names = [p.name for p in permissions]

    latest = Blueprint.objects.select_for_update().filter(name=name).order_by("-version").first()
    previous_names = sorted(latest.required_permissions.values_list("name", flat=True)) if latest else []
    if (latest is not None and latest.manifest_digest == digest and previous_names == names
            and latest.publisher_kind == kind):
        still_unknown = set(latest.skill_refs.filter(skill__isnull=True).values_list("name", flat=True))
        return ImportResult(latest, created=False, unknown_skills=[n for n in child_names if n in still_unknown])

    version = latest.version + 1 if latest else 1
    publisher, _ = Publisher.objects.get_or_create(name=publisher_name, defaults={"kind": named_kind})
    blueprint = Blueprint(
        name=name, version=version,
        display_name=_first_text(descriptor.get("DisplayName"), first.get("DisplayName"), name),
        description=_first_text(descriptor.get("Description"), first.get("Description")),
        publisher=publisher, publisher_kind=kind, products=_products(manifest),
        required_skillsets=required_skillsets,
        triggers=[dict(t) for d in definitions for t in d.get("Triggers") or []],
        inputs=[{**item, "Skill": skill["Name"].strip()} for _g, skill in _skills(manifest)
                for item in skill.get("Inputs") or []],
        manifest=manifest, manifest_digest=digest,
        permission_digest=catalog.permission_digest(name, version, names),
        is_complete=not unknown, imported_by=actor,
        executor_url=next((d["ExecutorUrl"].strip() for d in definitions if d.get("ExecutorUrl")), ""),
    )
    blueprint.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            blueprint.save()
    except IntegrityError:
        raise ValidationError(f"Another import of {name} created version {version} at the same moment; "
                              f"import the file again.") from None
    BlueprintSkill.objects.bulk_create([BlueprintSkill(blueprint=blueprint, name=n, skill=resolved[n])
                                        for n in child_names])
    blueprint.required_permissions.set(permissions)
    added = sorted(set(names) - set(previous_names))
    removed = sorted(set(previous_names) - set(names))
    audit.record(actor=actor, action="blueprint.import", target=blueprint,
                 before={"version": latest.version, "permissions": previous_names} if latest else None,
                 after={"name": name, "version": version, "permissions": names, "unknown_skills": unknown,
                        "publisher_kind": kind})
    return ImportResult(blueprint, created=True, previous=latest, added=added, removed=removed,
                        unknown_skills=unknown)


class _ExportDumper(yaml.SafeDumper):
    """``safe_dump`` with multi-line text as literal blocks, the way manifests are written by hand."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_ExportDumper.add_representer(str, _represent_text)


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        rank = {key: i for i, key in enumerate(KEY_ORDER)}
        keys = sorted(value, key=lambda k: rank.get(k, len(KEY_ORDER)))  # stable: other keys keep their order
        return {key: _ordered(value[key]) for key in keys}
    if isinstance(value, list):
        return [_ordered(item) for item in value]
    return value


def blueprint_export_yaml(blueprint: Blueprint) -> str:
    """The blueprint's manifest as YAML; importing it again gives the same ``manifest_digest``."""
    return yaml.dump(_ordered(blueprint.manifest), Dumper=_ExportDumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False, width=120)
