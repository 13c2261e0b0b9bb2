"""A realistic demo registry for ``seed_demo``: the skills catalog, the six reference blueprints and a few dozen
agents across statuses, scopes and identity types. Idempotent: agents that exist are left alone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

import agents
from agents import attributes as attribute_sets
from agents import catalog, manifests, registry, sponsorship
from agents import policy as agent_policy
from agents.choices import AgentStatus, IdentityType, SponsorshipState
from agents.models import Agent, AttributeSet, Blueprint, BlueprintSkill, Skillset, Sponsorship
from devkit.demo import register
from portal.models import Permission, User, Workspace

#: The reference Security Copilot manifests that ship with the registry.
MANIFESTS = Path(agents.__file__).resolve().parent / "data" / "manifests"

# (workspace, name, blueprint, scope, identity, creator, sponsors, owners, attributes, days to expiry, final status)
AGENTS = [
    ("soc", "ca-drift-hq", "ConditionalAccessPolicyDriftAgent", "workspace", "agent_identity", "owner",
     ["owner"], ["owner2"], {"department": "Security", "tier": "1"}, None, "active"),
    ("soc", "ca-drift-emea", "ConditionalAccessPolicyDriftAgent", "workspace", "agent_identity", "owner",
     ["owner2"], ["owner"], {"department": "Security", "region": "emea"}, 20, "active"),
    ("soc", "dlp-responder", "DLPIncidentResponseAgent", "workspace", "agent_identity", "owner",
     ["owner"], ["owner"], {"department": "Compliance"}, None, "active"),
    ("soc", "dlp-responder-legacy", "DLPIncidentResponseAgent", "workspace", "agent_identity", "owner",
     ["owner"], ["owner2"], {}, None, "retired"),
    ("soc", "device-cleanup", "InactiveDeviceCleanupAgent", "workspace", "agent_identity", "owner2",
     ["owner2"], ["owner2"], {"department": "IT"}, 90, "active"),
    ("soc", "device-cleanup-pilot", "InactiveDeviceCleanupAgent", "workspace", "agent_identity", "owner2",
     ["contributor"], ["owner2"], {"stage": "pilot"}, 5, "disabled"),
    ("soc", "cve-briefing", "CVEBriefing", "workspace", "user_account:owner", "owner",
     ["owner"], ["owner"], {"department": "Security"}, None, "active"),
    ("soc", "cve-briefing-chen", "CVEBriefing", "user", "user_account:contributor", "contributor",
     ["contributor"], ["contributor"], {}, 30, "active"),
    ("soc", "workload-hygiene", "WorkloadIdentitySecurityAgent", "workspace", "agent_identity", "owner",
     ["owner", "owner2"], ["owner"], {"tier": "0"}, None, "active"),
    ("identity", "guest-review", "GuestUserAccessReview&GovernanceAgent", "workspace", "agent_identity", "idowner",
     ["idowner"], ["idowner2"], {"department": "Identity"}, None, "active"),
    ("identity", "workload-hygiene-id", "WorkloadIdentitySecurityAgent", "workspace", "agent_identity", "idowner",
     ["idowner2"], ["idowner"], {"department": "Identity"}, 60, "active"),
    ("identity", "ca-drift-identity", "ConditionalAccessPolicyDriftAgent", "workspace", "agent_identity",
     "idowner2", ["idowner2"], ["idowner2"], {}, None, "disabled"),
]
FLEET = 18  # numbered workload-hygiene agents in soc, so lists and filters have something to page through


def _spec(workspace, users, blueprint, name, scope, identity, sponsors, owners, attributes, days, now):
    run_as = None
    if identity.startswith("user_account:"):
        run_as, identity = users[identity.split(":", 1)[1]], IdentityType.USER_ACCOUNT
    return registry.AgentSpec(
        blueprint=blueprint, name=name, identity_type=identity, scope=scope, run_as_user=run_as,
        sponsors=[users[u] for u in sponsors], owners=[users[u] for u in owners], attributes=attributes,
        expires_at=now + timedelta(days=days) if days else None,
    )


@register("agent registry")
def seed_registry(write: Callable[[str], None]) -> None:
    counts = catalog.load_skills()
    write(f"  skills catalog: {counts}")
    for path in sorted(MANIFESTS.glob("*.yaml")):
        result = manifests.blueprint_import(actor=None, data=path.read_bytes(), filename=path.name)
        write(f"  blueprint {result.blueprint}: {'imported' if result.created else 'unchanged'}")
    # GetEntraData is a real Entra skill the public skills list does not know: map it as an owner would.
    if BlueprintSkill.objects.filter(name="GetEntraData", skill__isnull=True).exists():
        catalog.skill_resolve_unknown(
            actor=None, name="GetEntraData", skillset=Skillset.objects.get(name="Entra"),
            permissions=list(Permission.objects.filter(kind="application",
                                                       name__in=["User.Read.All", "Directory.Read.All"])))
        write("  mapped the unknown skill GetEntraData → User.Read.All, Directory.Read.All")
    users = {u.username: u for u in User.objects.all()}
    workspaces = {w.slug: w for w in Workspace.objects.all()}
    latest = {}
    for blueprint in Blueprint.objects.filter(is_complete=True).order_by("name", "-version"):
        latest.setdefault(blueprint.name, blueprint)
    now = timezone.now()
    rows = list(AGENTS) + [
        ("soc", f"workload-hygiene-{i:02d}", "WorkloadIdentitySecurityAgent", "workspace", "agent_identity",
         "owner", ["owner2"], ["owner"], {"fleet": "hygiene", "tier": str(i % 3)}, (i * 7) if i % 4 else None,
         "active")
        for i in range(1, FLEET + 1)
    ]
    created = 0
    for slug, name, blueprint_name, scope, identity, creator, sponsors, owners, attributes, days, final in rows:
        workspace = workspaces[slug]
        if Agent.objects.filter(workspace=workspace, name=name).exists():
            continue
        spec = _spec(workspace, users, latest[blueprint_name], name, scope, identity, sponsors, owners,
                     attributes, days, now)
        agent = registry.agent_create(actor=users[creator], workspace=workspace, spec=spec).agent
        for asked in Sponsorship.objects.filter(agent=agent, state=SponsorshipState.PENDING).select_related("user"):
            sponsorship.sponsorship_accept(actor=asked.user, sponsorship=asked)  # R30: the demo's sponsors said yes
        if final == AgentStatus.DISABLED:
            registry.agent_disable(actor=users[creator], agent=agent, reason="demo: paused")
        elif final == AgentStatus.RETIRED:
            registry.agent_retire(actor=users[creator], agent=agent)
        created += 1
    write(f"  agents: {created} created, {Agent.objects.count()} in the registry")


@register("sponsorship request")
def seed_sponsorship_request(write: Callable[[str], None]) -> None:
    """R30 (docs/sponsorship.md): owner asks contributor2 to sponsor cve-briefing too; the request stays pending, so
    "My sponsorships" has something to answer when signed in as contributor2."""
    agent = Agent.objects.filter(workspace__slug="soc", name="cve-briefing").first()
    asked = User.objects.filter(username="contributor2").first()
    if agent is None or asked is None or Sponsorship.objects.filter(agent=agent, user=asked).exists():
        return
    registry.agent_person_add(actor=User.objects.get(username="owner"), agent=agent, user=asked,
                              role=agent_policy.SPONSOR_AGENT)
    write("  contributor2 is asked to sponsor cve-briefing (waiting for an answer)")


@register("attribute sets")
def seed_attribute_sets(write: Callable[[str], None]) -> None:
    """A protected "Governance" set holding ``tier`` (R20): after this, only Global and Attribute Assignment
    Administrators change an agent's tier; ``department`` and ``fleet`` stay in an unprotected set, the owners'.
    Runs after the registry step, whose agents were given their tiers at set-up."""
    for name, description, protected, keys in (
            ("Governance", "Attributes conditional access decides on; administrators assign them.", True, ["tier"]),
            ("Organisation", "Where an agent belongs; its owners keep these up to date.", False,
             ["department", "fleet"])):
        if not AttributeSet.objects.filter(name=name).exists():
            attribute_sets.attribute_set_save(actor=None, name=name, description=description, protected=protected,
                                          keys=keys)
            write(f"  attribute set {name}{' (protected)' if protected else ''}: {', '.join(keys)}")
