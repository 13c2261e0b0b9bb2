"""The skills catalog and the skill → permission map (R3, R4, R14, R23).

``load_skills`` fills the catalog from the Security Copilot skills list and applies the shipped map
(``agents.skill_map``). Owners then keep the map: ``skill_set_permissions`` changes what a skill needs,
``skill_resolve_unknown`` adds a skill a manifest named that the catalog did not know. Neither ever changes a
complete blueprint: its permission set is frozen once every skill is mapped (R3, and the digest partner approvals
are bound to, R15); incomplete blueprints that use the skill are recomputed.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from agents import skill_map
from agents.choices import PublisherKind
from agents.models import Blueprint, BlueprintSkill, Publisher, Skill, Skillset
from portal import audit, changes, rbac
from portal.api_permissions import ORGANISATION_READ
from portal.choices import PermissionKind, UserKind
from portal.models import Permission, User

DEFAULT_SKILLS_CSV = Path(__file__).resolve().parent / "data" / "SecurityCopilotSkills.csv"
CSV_COLUMNS = ("PluginName", "SkillName", "SkillDescription")
MAX_SKILL_NAME = Skill._meta.get_field("name").max_length
MAX_SKILLSET_NAME = Skillset._meta.get_field("name").max_length


# --- who may edit ---------------------------------------------------------------------------------------------


def can_edit_skill_map(user: User | None) -> bool:
    """Owners keep the skill map: explicit or inherited owners of any workspace (R10, R11) and directory managers.

    Agent users never do: an agent must not widen what agents may be given.
    """
    if user is None:
        return True  # the system (migrations, commands, jobs)
    if not user.is_authenticated or not user.is_active or getattr(user, "kind", None) != UserKind.HUMAN:
        return False
    return rbac.owns_any_workspace(user) or rbac.can_manage_directory(user)


def can_import_manifests(user: User | None) -> bool:
    """Any member of a workspace builds (R10: contributors build at user scope) and directory managers curate."""
    if user is None:
        return True
    if not user.is_authenticated or not user.is_active or getattr(user, "kind", None) != UserKind.HUMAN:
        return False
    return rbac.can_manage_directory(user) or rbac.workspaces_visible_to(user).exists()


def require_microsoft_trust(user: User | None, kind: str) -> None:
    """Only a Global Administrator imports a blueprint as Microsoft-published.

    Anyone can write ``Publisher: Microsoft`` in a file, and Microsoft blueprints get dedicated agent identities
    (R2) and need no partner approval (R14): trusting the label from anyone else would let a partner agent walk
    past the approval.
    """
    if kind == PublisherKind.MICROSOFT and user is not None and rbac.GLOBAL_ADMINISTRATOR not in rbac.role_keys(user):
        raise PermissionDenied("Only a Global Administrator imports a manifest as Microsoft-published (it gets a "
                               "dedicated identity and skips partner approval). Import it as partner or "
                               "organisation, or ask a Global Administrator.")


def require_skill_map_editor(user: User | None, what: str = "change the skill map") -> None:
    if not can_edit_skill_map(user):
        raise PermissionDenied(f"Only workspace owners and directory administrators {what}.")


# --- permissions and blueprints -------------------------------------------------------------------------------


def permission_digest(name: str, version: int, permission_names: Iterable[str]) -> str:
    """R15: the digest partner approvals are bound to: sha256 of ``name@version:`` and the sorted permission names."""
    payload = f"{name}@{version}:" + ",".join(sorted(set(permission_names)))
    return hashlib.sha256(payload.encode()).hexdigest()


def application_permissions(names: Iterable[str | Permission]) -> list[Permission]:
    """The application-kind catalog rows for these names (agents hold application permissions).

    Unknown names and privileged permissions are refused (R4): they can never reach an agent, so no skill may
    need one.
    """
    wanted = sorted({p.name if isinstance(p, Permission) else str(p).strip() for p in names})
    found = {p.name: p for p in Permission.objects.filter(name__in=wanted, kind=PermissionKind.APPLICATION)}
    unknown = [n for n in wanted if n not in found]
    if unknown:
        raise ValidationError(f"Not in the permission catalog (as application permissions): {', '.join(unknown)}.")
    privileged = [n for n in wanted if found[n].privileged]
    if privileged:
        raise ValidationError(f"Privileged permissions can never reach an agent: {', '.join(privileged)}.")
    if ORGANISATION_READ in found:  # R13: a Global Administrator grants it, one agent at a time, never a blueprint
        raise ValidationError(f"{ORGANISATION_READ} is not a blueprint's permission: it reaches an agent only through "
                              f"an access package that Global Administrators approve.")
    return [found[n] for n in wanted]


def skills_resolve(names: Sequence[str], required_skillsets: Sequence[str] = ()) -> dict[str, Skill | None]:
    """Find the catalog skill for each name a manifest uses (two queries at most).

    A skill of one of the manifest's ``RequiredSkillsets`` wins over a same-named skill elsewhere; otherwise the
    first by skillset name, so the answer is stable. ``Skillset.Skill`` names (the skillset may contain dots) are
    understood too. Names the catalog does not know map to None.
    """
    names = list(dict.fromkeys(names))
    required = set(required_skillsets or ())
    candidates: dict[str, list[Skill]] = {}
    for skill in Skill.objects.filter(name__in=names).select_related("skillset").order_by("skillset__name", "pk"):
        candidates.setdefault(skill.name, []).append(skill)
    resolved: dict[str, Skill | None] = {}
    for name in names:
        found = candidates.get(name, [])
        preferred = [s for s in found if s.skillset.name in required]
        resolved[name] = (preferred or found or [None])[0]
    qualified = {n: tuple(n.rsplit(".", 1)) for n in names if resolved[n] is None and "." in n.strip(".")}
    if qualified:
        rows = Skill.objects.filter(name__in={skill for _set, skill in qualified.values()},
                                    skillset__name__in={skillset for skillset, _s in qualified.values()})
        by_pair = {(s.skillset.name, s.name): s for s in rows.select_related("skillset")}
        for name, pair in qualified.items():
            resolved[name] = by_pair.get(pair)
    return resolved


def blueprint_apply_skills(blueprint: Blueprint) -> dict:
    """Recompute an incomplete blueprint from its skill references (inside the caller's transaction).

    Unresolved references are looked up again, ``required_permissions`` becomes the union of the resolved skills'
    permissions, ``is_complete`` is true once every reference has a skill, and ``permission_digest`` follows.
    Returns a snapshot for the audit trail. Complete blueprints are never passed here (R3).
    """
    if blueprint.is_complete:
        raise ValueError(f"{blueprint}: a complete blueprint's permission set is frozen.")
    refs = list(blueprint.skill_refs.all())
    unresolved = [r for r in refs if r.skill_id is None]
    if unresolved:
        found = skills_resolve([r.name for r in unresolved], blueprint.required_skillsets)
        for ref in unresolved:
            if found[ref.name] is not None:
                ref.skill = found[ref.name]
                ref.save(update_fields=["skill"])
    skill_ids = {r.skill_id for r in refs if r.skill_id is not None}
    permissions = list(Permission.objects.filter(skills__in=skill_ids).distinct().order_by("name"))
    names = [p.name for p in permissions]
    blueprint.required_permissions.set(permissions)
    blueprint.is_complete = all(r.skill_id is not None for r in refs)
    blueprint.permission_digest = permission_digest(blueprint.name, blueprint.version, names)
    blueprint.save(update_fields=["is_complete", "permission_digest"])
    return {"permissions": names, "is_complete": blueprint.is_complete,
            "unknown_skills": sorted(r.name for r in refs if r.skill_id is None)}


def _snapshot(blueprint: Blueprint) -> dict:
    refs = list(blueprint.skill_refs.all())
    return {"permissions": sorted(blueprint.required_permissions.values_list("name", flat=True)),
            "is_complete": blueprint.is_complete,
            "unknown_skills": sorted(r.name for r in refs if r.skill_id is None)}


def _recompute_incomplete(blueprint_ids: Iterable[int]) -> dict[str, dict]:
    """Lock and recompute these blueprints if they are still incomplete; returns what changed, by ``name@v``."""
    changed: dict[str, dict] = {}
    locked = Blueprint.objects.select_for_update().filter(pk__in=set(blueprint_ids), is_complete=False)
    for blueprint in locked.order_by("pk"):
        before = _snapshot(blueprint)
        after = blueprint_apply_skills(blueprint)
        if after != before:
            changed[f"{blueprint.name}@{blueprint.version}"] = after
    return changed


def _blueprints_using(skill: Skill) -> set[int]:
    """Incomplete blueprints that use ``skill``, or name it without having resolved it yet."""
    refs = BlueprintSkill.objects.filter(blueprint__is_complete=False)
    return set(refs.filter(skill=skill).values_list("blueprint_id", flat=True)) | set(
        refs.filter(skill__isnull=True, name=skill.name).values_list("blueprint_id", flat=True))


def _skill_state(skill: Skill) -> dict:
    return {"permissions": sorted(skill.permissions.values_list("name", flat=True)),
            "needs_no_permission": skill.needs_no_permission}


def _checked_map(permissions: Iterable[str | Permission], needs_no_permission: bool) -> list[Permission]:
    rows = application_permissions(permissions)
    if needs_no_permission and rows:
        raise ValidationError("A skill that needs no permission cannot also list permissions.")
    if not needs_no_permission and not rows:
        raise ValidationError("Name the permissions the skill needs, or confirm that it reads no protected data.")
    return rows


# --- services -------------------------------------------------------------------------------------------------


SKILL_MAP_CHANGE = "skill_map.change"


def skill_set_permissions(*, actor: User | None, skill: Skill, permissions: Iterable[str | Permission],
                          needs_no_permission: bool = False, break_glass: bool = False,
                          justification: str = "") -> Skill | changes.ChangeRequest:
    """Change which permissions a skill needs (``_skill_set_permissions_now``). A high-impact change (R31;
    docs/four-eyes.md): it waits for a second administrator unless ``break_glass``; the pending request is then
    returned instead of the skill."""
    names = sorted({p.name if isinstance(p, Permission) else str(p).strip() for p in permissions})
    return changes.gate(actor=actor, kind=SKILL_MAP_CHANGE, break_glass=break_glass, justification=justification,
                        payload={"skill_id": skill.pk, "permissions": names,
                                 "needs_no_permission": needs_no_permission})


def _apply_skill_map(*, actor: User | None, payload: dict) -> Skill:
    skill = Skill.objects.filter(pk=payload["skill_id"]).first()
    if skill is None:
        raise ValidationError("The skill no longer exists.")
    return _skill_set_permissions_now(actor=actor, skill=skill, permissions=payload["permissions"],
                                      needs_no_permission=payload["needs_no_permission"])


def _describe_skill_map(payload: dict) -> str:
    skill = Skill.objects.filter(pk=payload["skill_id"]).select_related("skillset").first()
    name = f"{skill.skillset.name}.{skill.name}" if skill else "a removed skill"
    needs = ", ".join(payload["permissions"]) or "no permission"
    return f"{name} needs {needs}"


changes.register(SKILL_MAP_CHANGE, label="Change the permissions a skill needs", apply=_apply_skill_map,
                 describe=_describe_skill_map, outcome=lambda skill: f"Permissions of {skill.name} saved.")


@transaction.atomic
def _skill_set_permissions_now(*, actor: User | None, skill: Skill, permissions: Iterable[str | Permission],
                               needs_no_permission: bool = False) -> Skill:
    """Owners change which application permissions a skill needs (the skill map), audited (R23).

    Privileged permissions are refused (R4); an empty map must be confirmed with ``needs_no_permission``.
    Complete blueprints keep their frozen permission set (R3, R15); incomplete blueprints using the skill are
    recomputed in the same transaction.
    """
    require_skill_map_editor(actor)
    skill = Skill.objects.select_for_update().select_related("skillset").get(pk=skill.pk)
    rows = _checked_map(permissions, needs_no_permission)
    before = _skill_state(skill)
    if before == {"permissions": [p.name for p in rows], "needs_no_permission": needs_no_permission}:
        return skill
    skill.needs_no_permission = needs_no_permission
    skill.save(update_fields=["needs_no_permission"])
    skill.permissions.set(rows)
    recomputed = _recompute_incomplete(_blueprints_using(skill))
    audit.record(actor=actor, action="catalog.skill_map_change", target=skill, before=before,
                 after={**_skill_state(skill), "recomputed_blueprints": recomputed})
    return skill


@transaction.atomic
def skill_resolve_unknown(*, actor: User | None, name: str, skillset: Skillset | str,
                          permissions: Iterable[str | Permission] = (), needs_no_permission: bool = False) -> Skill:
    """An owner maps a skill a manifest named that the catalog did not know (e.g. ``GetEntraData``).

    Creates the skill in ``skillset`` with its permissions (or confirmed as needing none), links every unresolved
    reference to that name, and recomputes those incomplete blueprints: complete once every skill is known, with
    the union of their skills' permissions and a new permission digest. Same permission rule as
    ``skill_set_permissions`` (R4), one audit event (R23).
    """
    require_skill_map_editor(actor)
    name = (name or "").strip()
    if not name:
        raise ValidationError("Give the skill's name.")
    if len(name) > MAX_SKILL_NAME:
        raise ValidationError(f"A skill name has at most {MAX_SKILL_NAME} characters.")
    if isinstance(skillset, str):
        found = Skillset.objects.filter(name=skillset).first()
        if found is None:
            raise ValidationError(f"There is no skillset called '{skillset}'.")
        skillset = found
    rows = _checked_map(permissions, needs_no_permission)
    if Skill.objects.filter(skillset=skillset, name=name).exists():
        raise ValidationError(f"{skillset.name}/{name} is already in the catalog; change its map instead.")
    skill = Skill(skillset=skillset, name=name, needs_no_permission=needs_no_permission)
    skill.full_clean()
    skill.save()
    skill.permissions.set(rows)
    affected = set(BlueprintSkill.objects.filter(name=name, skill__isnull=True, blueprint__is_complete=False)
                   .values_list("blueprint_id", flat=True))
    BlueprintSkill.objects.filter(blueprint_id__in=affected, name=name, skill__isnull=True).update(skill=skill)
    recomputed = _recompute_incomplete(affected)
    audit.record(actor=actor, action="catalog.skill_resolve", target=skill,
                 after={"skillset": skillset.name, "name": name, **_skill_state(skill),
                        "recomputed_blueprints": recomputed})
    return skill


def _read_skills_csv(path: Path) -> list[tuple[str, str, str]]:
    """(plugin, skill, description) rows; rows with a plugin but no skill name keep the plugin in the catalog."""
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValidationError(f"{path.name}: the skills list needs the columns {', '.join(CSV_COLUMNS)} "
                              f"(missing: {', '.join(missing)}).")
    rows, problems = [], []
    for number, row in enumerate(reader, start=1):
        plugin, skill = (row.get("PluginName") or "").strip(), (row.get("SkillName") or "").strip()
        description = (row.get("SkillDescription") or "").strip()
        if not plugin:
            if skill:
                problems.append(f"Row {number}: the skill '{skill}' has no PluginName.")
            continue
        if len(plugin) > MAX_SKILLSET_NAME:
            problems.append(f"Row {number}: PluginName is longer than {MAX_SKILLSET_NAME} characters.")
        if len(skill) > MAX_SKILL_NAME:
            problems.append(f"Row {number}: SkillName is longer than {MAX_SKILL_NAME} characters.")
        rows.append((plugin, skill, description))
    if problems:
        raise ValidationError(problems[:20])
    return rows


@transaction.atomic
def load_skills(path: str | Path | None = None) -> dict[str, int]:
    """Fill the skills catalog from the Security Copilot skills list and apply the shipped skill map.

    Idempotent: a second run creates and changes nothing (and writes no audit event). Each plugin becomes a
    ``Skillset`` of its publisher (Microsoft or a partner, ``agents.skill_map.classify_plugin``) with the
    Microsoft product whose data it reads; each named skill a ``Skill``. The map is applied only to skills nobody
    has mapped yet (no permissions and not confirmed as needing none), so owners' changes survive a rerun.
    Incomplete blueprints are recomputed when new skills may resolve them. One audit event when anything
    changed (R23).
    """
    path = Path(path) if path else DEFAULT_SKILLS_CSV
    rows = _read_skills_csv(path)
    counts = dict.fromkeys(("publishers_created", "skillsets_created", "skillsets_updated", "skills_created",
                            "skills_updated", "skills_mapped", "blueprints_recomputed"), 0)

    plugins = {plugin: skill_map.classify_plugin(plugin) for plugin, _skill, _description in rows}
    publishers = {p.name: p for p in Publisher.objects.filter(name__in={c.publisher for c in plugins.values()})}
    for plugin_class in plugins.values():
        if plugin_class.publisher not in publishers:
            publishers[plugin_class.publisher] = Publisher.objects.create(name=plugin_class.publisher,
                                                                          kind=plugin_class.kind)
            counts["publishers_created"] += 1

    skillsets = {s.name: s for s in Skillset.objects.filter(name__in=plugins)}
    for plugin, plugin_class in plugins.items():
        publisher = publishers[plugin_class.publisher]
        skillset = skillsets.get(plugin)
        if skillset is None:
            skillsets[plugin] = Skillset.objects.create(name=plugin, publisher=publisher,
                                                        product=plugin_class.product)
            counts["skillsets_created"] += 1
        elif (skillset.publisher_id, skillset.product) != (publisher.pk, plugin_class.product):
            skillset.publisher, skillset.product = publisher, plugin_class.product
            skillset.save(update_fields=["publisher", "product"])
            counts["skillsets_updated"] += 1

    wanted = {(plugin, skill): description for plugin, skill, description in rows if skill}
    existing = {(s.skillset.name, s.name): s
                for s in Skill.objects.filter(skillset__name__in=plugins).select_related("skillset")}
    new_skills = [Skill(skillset=skillsets[plugin], name=skill, description=description)
                  for (plugin, skill), description in wanted.items() if (plugin, skill) not in existing]
    Skill.objects.bulk_create(new_skills)
    counts["skills_created"] = len(new_skills)
    changed_descriptions = []
    for key, description in wanted.items():
        skill = existing.get(key)
        if skill is not None and skill.description != description:
            skill.description = description
            changed_descriptions.append(skill)
    Skill.objects.bulk_update(changed_descriptions, ["description"])
    counts["skills_updated"] = len(changed_descriptions)

    counts["skills_mapped"] = _apply_skill_map(plugins)
    if counts["skills_created"] or counts["skills_mapped"]:
        incomplete = Blueprint.objects.filter(is_complete=False).values_list("pk", flat=True)
        counts["blueprints_recomputed"] = len(_recompute_incomplete(incomplete))
    if any(counts.values()):
        audit.record(actor=None, action="catalog.load_skills", target_label=path.name,
                     after={**counts, "source": path.name})
    return {"rows": len(rows), "skillsets": len(plugins), "skills": len(wanted), **counts}


def _apply_skill_map(plugins: dict[str, skill_map.PluginClass]) -> int:
    """Give every not-yet-mapped skill of these plugins its shipped map; returns how many skills got one."""
    through = Skill.permissions.through
    mapped_ids = set(through.objects.values_list("skill_id", flat=True).distinct())
    unmapped = [s for s in Skill.objects.filter(skillset__name__in=plugins, needs_no_permission=False)
                .select_related("skillset") if s.pk not in mapped_ids]
    wanted = {s.pk: skill_map.permissions_for(s.skillset.name, s.name) for s in unmapped}
    names = {n for perms in wanted.values() if perms for n in perms}
    catalog = {p.name: p for p in application_permissions(names)} if names else {}
    no_permission, links = [], []
    for skill in unmapped:
        permissions = wanted[skill.pk]
        if permissions is None:
            continue  # the shipped map has no answer: an owner decides
        if not permissions:
            skill.needs_no_permission = True
            no_permission.append(skill)
        links += [through(skill_id=skill.pk, permission_id=catalog[n].pk) for n in dict.fromkeys(permissions)]
    Skill.objects.bulk_update(no_permission, ["needs_no_permission"])
    through.objects.bulk_create(links)
    return len(no_permission) + len({link.skill_id for link in links})
