"""The built-in agents: the *Agent Hygiene Agent* and the *Conditional Access Optimization Agent*.

They are ordinary Microsoft-published blueprints (manifests in ``governance/data/builtin/``, imported like any
other, so their permissions come from the skill map and are fixed by R3) whose runs execute here, in the worker,
deterministically and without a language model. A run reads only through the portal API with its own token
(``governance.runs.portal_client``); it returns an ``Output`` (a summary and findings). A person may then *apply* a
finding: the agent's module carries it out through the normal services as that person (``Applied``).

``install`` puts the catalog skills and the two blueprints in place; it is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path

from django.db import transaction

from agents.choices import PublisherKind

DATA_DIR = Path(__file__).resolve().parent / "data"
SKILLSET = "AgentIdentityPortal"
PUBLISHER = "Microsoft"
#: The catalog skills the built-in manifests call, and the one permission each needs (the skill map).
SKILLS = {
    "ListAgentIdentities": "User.Read.All",  # agents: identity, status, sponsors, risk
    "ListAgentCredentials": "Application.Read.All",  # client secrets: prefixes and expiry
    "ListAgentRoleAssignments": "RoleManagement.Read.Directory",  # permissions, their sources, run-as users' roles
    "ListAgentSignIns": "AuditLog.Read.All",  # sign-ins: last use and the scopes used
    "ListConditionalAccessPolicies": "Policy.Read.All",  # conditional access policies for agents
}


@dataclass
class Output:
    """What a run of a built-in agent produced: a one-paragraph summary and findings (JSON-ready dicts)."""

    summary: str
    findings: list[dict] = field(default_factory=list)


@dataclass
class Applied:
    """The result of applying a finding: a message for the page, and a new secret to show once (rotation)."""

    message: str
    secret: str = ""


@dataclass(frozen=True)
class BuiltIn:
    """A built-in agent: its blueprint name and the module holding ``execute(client, run) -> Output`` and
    ``apply(actor, run, finding, params) -> Applied`` (loaded on first use: those modules import this one)."""

    name: str
    module: str

    def execute(self, client, run) -> Output:
        return import_module(self.module).execute(client, run)

    def apply(self, actor, run, finding: dict, params: dict | None = None) -> Applied:
        return import_module(self.module).apply(actor, run, finding, params or {})


def count_by_level(found) -> str:
    """"2 high, 1 low" for a summary line (findings with a ``level``)."""
    counts = [(level, sum(1 for f in found if f.level == level)) for level in ("high", "medium", "low")]
    return ", ".join(f"{n} {level}" for level, n in counts if n) or "none"


BUILTINS: dict[str, BuiltIn] = {
    "AgentHygieneAgent": BuiltIn("AgentHygieneAgent", "governance.runs.builtin.hygiene"),
    "ConditionalAccessOptimizationAgent": BuiltIn("ConditionalAccessOptimizationAgent",
                                                  "governance.runs.builtin.optimizer"),
}


def builtin_for(blueprint) -> BuiltIn | None:
    """The built-in implementation of a blueprint: only Microsoft-published ones (which only a Global Administrator
    can import, ``catalog.require_microsoft_trust``), so nobody's own manifest can borrow the name."""
    if blueprint is None or blueprint.publisher_kind != PublisherKind.MICROSOFT:
        return None
    return BUILTINS.get(blueprint.name)


@transaction.atomic
def install(write: Callable[[str], None] = lambda s: None) -> list:
    """Ensure the ``AgentIdentityPortal`` skillset and its skills, then import the two built-in manifests.

    Idempotent: a second run changes nothing and writes no audit event. A skill an owner has already mapped keeps
    its map (as ``catalog.load_skills`` does). Returns the two blueprints (their latest versions)."""
    from agents import catalog, manifests
    from agents.models import Publisher, Skill, Skillset
    from portal import audit
    from portal.choices import Product

    publisher, _ = Publisher.objects.get_or_create(name=PUBLISHER, defaults={"kind": PublisherKind.MICROSOFT})
    skillset = Skillset.objects.filter(name=SKILLSET).first()
    if skillset is None:
        skillset = Skillset(name=SKILLSET, publisher=publisher, product=Product.PORTAL,
                            description="The Agent Identity Portal's own API: agents, credentials, permissions, "
                                        "sign-ins and conditional access.")
        skillset.full_clean()
        skillset.save()
        audit.record(actor=None, action="catalog.skillset_create", target=skillset,
                     after={"name": skillset.name, "publisher": publisher.name, "product": skillset.product})
        write(f"  skillset {SKILLSET} created")
    existing = {s.name: s for s in Skill.objects.filter(skillset=skillset).prefetch_related("permissions")}
    for name, permission in SKILLS.items():
        skill = existing.get(name)
        if skill is None:
            catalog.skill_resolve_unknown(actor=None, name=name, skillset=skillset, permissions=[permission])
            write(f"  skill {SKILLSET}/{name} → {permission}")
        elif not skill.needs_no_permission and not skill.permissions.all():
            catalog.skill_set_permissions(actor=None, skill=skill, permissions=[permission])
            write(f"  skill {SKILLSET}/{name} mapped to {permission}")
    blueprints = []
    for path in sorted(DATA_DIR.glob("*.yaml")):
        result = manifests.blueprint_import(actor=None, data=path.read_bytes(), filename=path.name)
        if result.created:
            write(f"  blueprint {result.blueprint.name} v{result.blueprint.version} imported "
                  f"({'complete' if result.blueprint.is_complete else 'incomplete'})")
        blueprints.append(result.blueprint)
    return blueprints
