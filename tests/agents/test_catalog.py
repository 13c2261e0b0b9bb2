"""The skills catalog and the skill map: loading the skills list, owners keeping the map (R3, R4, R10, R11, R23)."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command

import agents
from agents import catalog, manifests, skill_map
from agents.models import Blueprint, Skill, Skillset
from portal.models import AuditEvent, Permission
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

DATA = Path(agents.__file__).resolve().parent / "data"
SKILLS_CSV = DATA / "SecurityCopilotSkills.csv"
MANIFESTS = sorted((DATA / "manifests").glob("*.yaml"))


def csv_rows() -> list[dict]:
    with SKILLS_CSV.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def import_file(filename: str, actor=None) -> manifests.ImportResult:
    path = DATA / "manifests" / filename
    return manifests.blueprint_import(actor=actor, data=path.read_bytes(), filename=path.name)


def names_of(permissions) -> set[str]:
    return {p.name for p in permissions.all()}


@pytest.fixture
def skills() -> dict:
    return catalog.load_skills()


# --- loading the skills list --------------------------------------------------------------------------------


def test_load_skills_fills_the_catalog_from_the_shipped_skills_list(skills):
    rows = csv_rows()
    named = {(r["PluginName"], r["SkillName"]) for r in rows if r["SkillName"].strip()}
    assert skills["rows"] == 410
    assert Skillset.objects.count() == skills["skillsets_created"] == 69
    # Ten plugins are listed without skills: they are skillsets with no skill rows.
    assert Skill.objects.count() == skills["skills_created"] == len(named) == 400
    assert Skill.objects.get(name="GetEntraRiskyUsers").description.startswith("View details of Microsoft Entra")
    assert "Parameters:\n" in Skill.objects.get(name="AccessReviewRecommendationSkill").description  # multi-line
    assert AuditEvent.objects.filter(action="catalog.load_skills").count() == 1


def test_load_skills_twice_creates_and_changes_nothing(skills):
    events = AuditEvent.objects.count()
    again = catalog.load_skills(SKILLS_CSV)
    assert {k: v for k, v in again.items() if k not in ("rows", "skillsets", "skills")} == dict.fromkeys(
        ("publishers_created", "skillsets_created", "skillsets_updated", "skills_created", "skills_updated",
         "skills_mapped", "blueprints_recomputed"), 0)
    assert Skill.objects.count() == 400
    assert AuditEvent.objects.count() == events  # nothing changed, nothing recorded


@pytest.mark.parametrize(("plugin", "publisher", "kind", "product"), [
    ("Entra", "Microsoft", "microsoft", "entra"),
    ("Intune", "Microsoft", "microsoft", "intune"),
    ("Purview", "Microsoft", "microsoft", "purview"),
    ("M365", "Microsoft", "microsoft", "defender"),
    ("Sentinel", "Microsoft", "microsoft", "sentinel"),
    ("NL2KQLDefenderSentinel", "Microsoft", "microsoft", "defender"),
    ("ThreatIntelligence.DTI", "Microsoft", "microsoft", "defender"),
    ("Generic", "Microsoft", "microsoft", ""),
    ("Orchestrator.Common", "Microsoft", "microsoft", ""),
    ("Tanium", "Tanium", "partner", ""),
    ("Shodan", "Shodan", "partner", ""),
    ("ShodanInternetDB", "Shodan", "partner", ""),
    ("RedCanary", "Red Canary", "partner", ""),
    ("DruvaSentinelPlugin", "Druva", "partner", ""),  # Druva's own "Sentinel", not Microsoft Sentinel
])
def test_load_skills_classifies_each_plugin_as_microsoft_or_partner(skills, plugin, publisher, kind, product):
    skillset = Skillset.objects.select_related("publisher").get(name=plugin)
    assert (skillset.publisher.name, skillset.publisher.kind, skillset.product) == (publisher, kind, product)


def test_every_plugin_of_the_skills_list_is_classified_explicitly():
    plugins = {r["PluginName"] for r in csv_rows()}
    assert len(plugins) == 69
    assert plugins <= set(skill_map.MICROSOFT_PLUGINS) | set(skill_map.PARTNER_PLUGINS)
    assert not set(skill_map.MICROSOFT_PLUGINS) & set(skill_map.PARTNER_PLUGINS)


def test_an_unlisted_plugin_is_a_partner_unless_its_name_says_microsoft():
    assert skill_map.classify_plugin("Contoso.Scanner").kind == "partner"
    assert skill_map.classify_plugin("Microsoft.NewAgent").kind == "microsoft"


# --- the shipped skill map ----------------------------------------------------------------------------------


def test_skill_map_covers_every_child_skill_of_the_reference_manifests():
    known = {r["SkillName"] for r in csv_rows()}
    children = set()
    for path in MANIFESTS:
        manifest = manifests.parse_manifest(path.read_bytes(), path.name)
        children |= set(manifests._child_skill_names(manifest))
    assert "GetEntraData" in children - known  # named by four manifests, absent from the skills list
    assert sorted(children & known - set(skill_map.SKILL_PERMISSIONS)) == []


def test_r4_every_mapped_permission_is_a_non_privileged_application_permission_of_the_catalog():
    names = skill_map.all_mapped_permission_names()
    found = {p.name: p for p in Permission.objects.filter(name__in=names, kind="application")}
    assert sorted(names - set(found)) == []
    assert sorted(n for n, p in found.items() if p.privileged) == []


def test_load_skills_applies_the_skill_map(skills):
    def permissions(name):
        return names_of(Skill.objects.get(name=name).permissions)

    assert "User.Read.All" in permissions("GetEntraUserDetailsV1")
    assert permissions("GetEntraSignInLogsV1") == {"AuditLog.Read.All"}
    assert permissions("GetEntraServicePrincipalPermissionsGranted") == {"Application.Read.All",
                                                                          "DelegatedPermissionGrant.Read.All"}
    assert permissions("AccessReviewsInstanceDecisionSkill") == {"AccessReview.ReadWrite.All"}
    assert permissions("GetCvesByKeywordSearchDti") == {"ThreatIntelligence.Read.All", "Vulnerability.Read.All"}
    assert permissions("NL2KQLDefenderSentinel") == {"ThreatHunting.Read.All", "Data.Read"}
    assert "Machine.Read.All" in permissions("GetDefenderDeviceSummary")
    # Skills without their own entry get their plugin's default.
    assert permissions("LifecycleWorkflowsCompareVersionsSkill") == {"User.Read.All"}
    assert permissions("GetSubdomainsByIndicators") == {"ThreatIntelligence.Read.All"}
    # Partner skills need no Microsoft permission; that is recorded, not left open.
    tanium = Skill.objects.filter(skillset__name="Tanium")
    assert tanium.count() == 19 and all(s.needs_no_permission and not s.permissions.exists() for s in tanium)
    assert Skill.objects.get(name="ConvertUnixTimestamp").needs_no_permission
    # Azure RBAC is not in the catalog: those skills stay unmapped for an owner to decide.
    firewall = Skill.objects.get(name="GetTopRulesTriggered")
    assert not firewall.needs_no_permission and not firewall.permissions.exists()
    every = Permission.objects.filter(skills__isnull=False).distinct()
    assert set(every.values_list("kind", flat=True)) == {"application"}
    assert not every.filter(privileged=True).exists()


def test_a_rerun_of_load_skills_keeps_an_owners_change_to_the_map(world, skills):
    skill = Skill.objects.get(name="GetEntraAuditLogs")
    catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=["AuditLog.Read.All",
                                                                               "Reports.Read.All"])
    catalog.load_skills()
    assert names_of(skill.permissions) == {"AuditLog.Read.All", "Reports.Read.All"}


def test_load_skills_resolves_blueprints_imported_before_the_catalog_existed():
    result = import_file("CVEBriefing.yaml")
    assert result.unknown_skills == ["GetCvesByKeywordSearchDti"] and not result.blueprint.is_complete
    counts = catalog.load_skills()
    blueprint = Blueprint.objects.get(pk=result.blueprint.pk)
    assert counts["blueprints_recomputed"] == 1
    assert blueprint.is_complete
    assert names_of(blueprint.required_permissions) == {"ThreatIntelligence.Read.All", "Vulnerability.Read.All"}
    assert blueprint.permission_digest == catalog.permission_digest(
        "CVEBriefing", 1, ["ThreatIntelligence.Read.All", "Vulnerability.Read.All"])


def test_load_skills_refuses_a_file_without_the_expected_columns(tmp_path):
    bad = tmp_path / "skills.csv"
    bad.write_text("Plugin,Skill\nEntra,GetEntraRiskyUsers\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="PluginName, SkillName, SkillDescription"):
        catalog.load_skills(bad)
    assert not Skillset.objects.exists()


# --- owners keep the map ------------------------------------------------------------------------------------


def test_r10_r11_owners_and_directory_administrators_edit_the_map(world, skills):
    skill = Skill.objects.get(name="GetEntraDiagnosticsLogs")
    for actor, permission in ((world.owner, "Policy.Read.All"), (world.inherited, "Reports.Read.All"),
                              (world.ga, "Directory.Read.All")):
        catalog.skill_set_permissions(actor=actor, skill=skill, permissions=[permission])
        assert names_of(skill.permissions) == {permission}


def test_r10_a_contributor_who_owns_no_workspace_cannot_edit_the_map(world, skills):
    skill = Skill.objects.get(name="GetEntraAuditLogs")
    for actor in (world.contributor, world.newcomer, UserFactory(username="agent-x", kind="agent_user")):
        with pytest.raises(PermissionDenied):
            catalog.skill_set_permissions(actor=actor, skill=skill, permissions=["Reports.Read.All"])
        with pytest.raises(PermissionDenied):
            catalog.skill_resolve_unknown(actor=actor, name="GetEntraData", skillset="Entra",
                                          permissions=["Directory.Read.All"])
    assert names_of(skill.permissions) == {"AuditLog.Read.All"}
    assert not Skill.objects.filter(name="GetEntraData").exists()


@pytest.mark.parametrize("privileged", ["Directory.ReadWrite.All", "RoleManagement.ReadWrite.Directory",
                                        "Application.ReadWrite.All", "Portal.Agents.ReadWrite.All"])
def test_r4_privileged_permissions_are_refused_in_the_map(world, skills, privileged):
    skill = Skill.objects.get(name="GetEntraApplication")
    events = AuditEvent.objects.count()
    with pytest.raises(ValidationError, match="can never reach an agent"):
        catalog.skill_set_permissions(actor=world.ga, skill=skill, permissions=["Application.Read.All", privileged])
    with pytest.raises(ValidationError, match="can never reach an agent"):
        catalog.skill_resolve_unknown(actor=world.ga, name="GetEntraData", skillset="Entra",
                                      permissions=[privileged])
    assert names_of(skill.permissions) == {"Application.Read.All"}
    assert AuditEvent.objects.count() == events


def test_the_map_names_catalog_permissions_and_an_empty_map_must_be_confirmed(world, skills):
    skill = Skill.objects.get(name="GetEntraApplication")
    with pytest.raises(ValidationError, match="Not in the permission catalog"):
        catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=["Mail.Read"])
    with pytest.raises(ValidationError, match="reads no protected data"):
        catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=[])
    with pytest.raises(ValidationError, match="cannot also list"):
        catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=["User.Read.All"],
                                      needs_no_permission=True)
    catalog.skill_set_permissions(actor=world.owner, skill=skill, permissions=[], needs_no_permission=True)
    skill.refresh_from_db()
    assert skill.needs_no_permission and not skill.permissions.exists()


def test_r23_a_map_change_is_audited_with_before_and_after(world, skills):
    skill = Skill.objects.get(name="GetEntraAuditLogs")
    catalog.skill_set_permissions(actor=world.owner, skill=skill,
                                  permissions=["AuditLog.Read.All", "Reports.Read.All"])
    event = AuditEvent.objects.get(action="catalog.skill_map_change")
    assert event.actor == world.owner and event.target_id == str(skill.pk)
    assert event.before["permissions"] == ["AuditLog.Read.All"]
    assert event.after["permissions"] == ["AuditLog.Read.All", "Reports.Read.All"]
    # The same map again is no change and no event.
    catalog.skill_set_permissions(actor=world.owner, skill=skill,
                                  permissions=["Reports.Read.All", "AuditLog.Read.All"])
    assert AuditEvent.objects.filter(action="catalog.skill_map_change").count() == 1


def test_r3_a_map_change_leaves_complete_blueprints_frozen_and_recomputes_incomplete_ones(world, skills):
    complete = import_file("DLPIncidentResponseAgent.yaml").blueprint  # uses GetEntraAuditLogs, complete
    incomplete = import_file("ConditionalAccessPolicyDriftAgent.yaml").blueprint  # also uses it; GetEntraData
    frozen = (names_of(complete.required_permissions), complete.permission_digest)
    assert complete.is_complete and not incomplete.is_complete
    assert "Reports.Read.All" not in names_of(incomplete.required_permissions)

    catalog.skill_set_permissions(actor=world.owner, skill=Skill.objects.get(name="GetEntraAuditLogs"),
                                  permissions=["AuditLog.Read.All", "Reports.Read.All"])

    complete.refresh_from_db()
    incomplete.refresh_from_db()
    assert (names_of(complete.required_permissions), complete.permission_digest) == frozen
    assert "Reports.Read.All" in names_of(incomplete.required_permissions)
    assert incomplete.permission_digest == catalog.permission_digest(
        incomplete.name, incomplete.version, names_of(incomplete.required_permissions))
    event = AuditEvent.objects.get(action="catalog.skill_map_change")
    assert list(event.after["recomputed_blueprints"]) == ["ConditionalAccessPolicyDriftAgent@1"]


def test_resolving_an_unknown_skill_refuses_an_empty_map_unless_confirmed(world, skills):
    import_file("WorkloadIdentitySecurityAgent.yaml")
    with pytest.raises(ValidationError, match="reads no protected data"):
        catalog.skill_resolve_unknown(actor=world.owner, name="GetEntraData", skillset="Entra")
    with pytest.raises(ValidationError, match="no skillset called"):
        catalog.skill_resolve_unknown(actor=world.owner, name="GetEntraData", skillset="Nope",
                                      permissions=["Directory.Read.All"])
    skill = catalog.skill_resolve_unknown(actor=world.owner, name="GetEntraData",
                                          skillset=Skillset.objects.get(name="Entra"), needs_no_permission=True)
    blueprint = Blueprint.objects.get(name="WorkloadIdentitySecurityAgent")
    assert skill.needs_no_permission and blueprint.is_complete
    assert "Directory.Read.All" not in names_of(blueprint.required_permissions)
    event = AuditEvent.objects.get(action="catalog.skill_resolve")
    assert event.after["recomputed_blueprints"]["WorkloadIdentitySecurityAgent@1"]["is_complete"] is True
    with pytest.raises(ValidationError, match="already in the catalog"):
        catalog.skill_resolve_unknown(actor=world.owner, name="GetEntraData", skillset="Entra",
                                      needs_no_permission=True)


# --- the command ----------------------------------------------------------------------------------------------


def test_load_skills_command_prints_the_counts_and_is_safe_to_rerun():
    out = StringIO()
    call_command("load_skills", "--file", str(SKILLS_CSV), stdout=out)
    assert "410 rows: 69 skillsets, 400 skills." in out.getvalue()
    assert "skills created: 400" in out.getvalue()
    again = StringIO()
    call_command("load_skills", stdout=again)
    assert "skills created: 0" in again.getvalue() and "already up to date" in again.getvalue()
    assert Skill.objects.count() == 400
