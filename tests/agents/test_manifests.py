"""Importing Security Copilot manifests as blueprint versions, and exporting them (R2, R3, R4, R14, R15, R23)."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError

import agents
from agents import catalog, manifests, skill_map
from agents.manifests import ManifestError
from agents.models import Blueprint, BlueprintSkill, Publisher, Skill
from portal.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

MANIFESTS = Path(agents.__file__).resolve().parent / "data" / "manifests"

# file → (Descriptor.Name, publisher kind, products, skills the catalog does not know)
REFERENCE = {
    "CVEBriefing.yaml": ("CVEBriefing", "organisation", ["Microsoft Defender XDR"], []),
    "ConditionalAccessPolicyDriftAgent.yaml": ("ConditionalAccessPolicyDriftAgent", "microsoft", ["Entra"],
                                               ["GetEntraData"]),
    "DLPIncidentResponseAgent.yaml": ("DLPIncidentResponseAgent", "microsoft",
                                      ["Microsoft Purview", "Microsoft Entra", "Microsoft Defender XDR"], []),
    "GuestUserAccessReviewGovernanceAgent.yaml": ("GuestUserAccessReview&GovernanceAgent", "microsoft", ["Entra"],
                                                  ["GetEntraData"]),
    "InactiveDeviceCleanupAgent.yaml": ("InactiveDeviceCleanupAgent", "microsoft", ["Microsoft Intune"],
                                        ["GetEntraData"]),
    "WorkloadIdentitySecurityAgent.yaml": ("WorkloadIdentitySecurityAgent", "microsoft", ["Entra"],
                                           ["GetEntraData"]),
}


@pytest.fixture(autouse=True)
def skills(db) -> None:
    catalog.load_skills()


def read(filename: str) -> bytes:
    return (MANIFESTS / filename).read_bytes()


def import_file(filename: str, actor=None, **options) -> manifests.ImportResult:
    return manifests.blueprint_import(actor=actor, data=read(filename), filename=filename, **options)


def import_dict(manifest: dict, filename: str = "changed.yaml", actor=None, **options) -> manifests.ImportResult:
    return manifests.blueprint_import(actor=actor, data=yaml.safe_dump(manifest).encode(), filename=filename,
                                      **options)


def loaded(filename: str) -> dict:
    return yaml.safe_load(read(filename))


def names_of(permissions) -> set[str]:
    return {p.name for p in permissions.all()}


def minimal(**changes) -> dict:
    """A small valid manifest; ``changes`` replace top-level sections."""
    manifest = {
        "Descriptor": {"Name": "Tiny", "DisplayName": "Tiny agent", "Description": "Reads risky users."},
        "AgentDefinitions": [{"Name": "Tiny", "Publisher": "Custom", "Product": "Entra",
                              "RequiredSkillsets": ["Entra"],
                              "Triggers": [{"Name": "Default", "DefaultPollPeriodSeconds": 0,
                                            "ProcessSkill": "Tiny.Tiny"}]}],
        "SkillGroups": [{"Format": "Agent", "Skills": [{
            "Name": "Tiny", "Inputs": [{"Name": "query", "Description": "What to look at", "DefaultValue": "",
                                        "Required": True}],
            "Settings": {"Instructions": "Do it."}, "ChildSkills": ["GetEntraRiskyUsers"]}]}],
    }
    manifest.update(changes)
    return manifest


# --- the reference manifests --------------------------------------------------------------------------------


@pytest.mark.parametrize("filename", sorted(REFERENCE))
def test_every_reference_manifest_imports_as_it_is(filename):
    name, kind, products, unknown = REFERENCE[filename]
    result = import_file(filename)
    blueprint = result.blueprint
    manifest = loaded(filename)
    children = manifests._child_skill_names(manifest)

    assert result.created and result.previous is None and blueprint.version == 1
    assert (blueprint.name, blueprint.publisher_kind, blueprint.products) == (name, kind, products)
    assert result.unknown_skills == unknown and blueprint.is_complete is (not unknown)
    assert blueprint.display_name == manifest["Descriptor"]["DisplayName"]
    assert blueprint.required_skillsets == manifest["AgentDefinitions"][0]["RequiredSkillsets"]
    assert blueprint.triggers == manifest["AgentDefinitions"][0]["Triggers"]
    assert blueprint.kind == "assistive"  # on-demand triggers (poll period 0)
    assert [i["Name"] for i in blueprint.inputs] == [i["Name"] for i in manifest["SkillGroups"][0]["Skills"][0]
                                                     ["Inputs"]]
    assert blueprint.manifest == manifest
    assert blueprint.manifest_digest == manifests.manifest_digest(manifest)

    refs = {r.name: r.skill for r in BlueprintSkill.objects.filter(blueprint=blueprint)}
    assert set(refs) == set(children)
    assert sorted(n for n, skill in refs.items() if skill is None) == unknown
    expected = {p for n in children if n in skill_map.SKILL_PERMISSIONS for p in skill_map.SKILL_PERMISSIONS[n]}
    assert names_of(blueprint.required_permissions) == expected == set(result.added)
    assert set(blueprint.required_permissions.values_list("kind", flat=True)) <= {"application"}
    assert blueprint.permission_digest == catalog.permission_digest(name, 1, expected)

    event = AuditEvent.objects.get(action="blueprint.import")
    assert event.target_id == str(blueprint.pk) and event.actor_kind == "system"
    assert event.after == {"name": name, "version": 1, "permissions": sorted(expected), "unknown_skills": unknown,
                           "publisher_kind": kind}


def test_the_reference_manifests_need_the_permissions_their_skills_read():
    cve = import_file("CVEBriefing.yaml").blueprint
    assert names_of(cve.required_permissions) == {"ThreatIntelligence.Read.All", "Vulnerability.Read.All"}
    devices = import_file("InactiveDeviceCleanupAgent.yaml").blueprint
    assert {"DeviceManagementManagedDevices.Read.All", "Machine.Read.All", "User.Read.All",
            "SecurityIncident.Read.All"} <= names_of(devices.required_permissions)
    guests = import_file("GuestUserAccessReviewGovernanceAgent.yaml").blueprint
    assert {"AccessReview.ReadWrite.All", "ThreatHunting.Read.All", "Data.Read",
            "AuditLogsQuery.Read.All"} <= names_of(guests.required_permissions)
    assert not guests.required_permissions.filter(privileged=True).exists()  # R4


def test_resolving_GetEntraData_completes_every_manifest_that_named_it(world):
    incomplete = [import_file(f).blueprint for f, spec in REFERENCE.items() if spec[3]]
    complete = import_file("CVEBriefing.yaml").blueprint
    assert len(incomplete) == 4 and not any(b.is_complete for b in incomplete)

    catalog.skill_resolve_unknown(actor=world.owner, name="GetEntraData", skillset="Entra",
                                  permissions=["Directory.Read.All", "User.Read.All"])

    for blueprint in incomplete:
        before = names_of(blueprint.required_permissions)
        blueprint.refresh_from_db()
        assert blueprint.is_complete
        assert names_of(blueprint.required_permissions) == before | {"Directory.Read.All", "User.Read.All"}
        assert blueprint.permission_digest == catalog.permission_digest(
            blueprint.name, 1, names_of(blueprint.required_permissions))
        assert not BlueprintSkill.objects.filter(blueprint=blueprint, skill__isnull=True).exists()
    assert "Directory.Read.All" not in names_of(Blueprint.objects.get(pk=complete.pk).required_permissions)
    event = AuditEvent.objects.get(action="catalog.skill_resolve")
    assert len(event.after["recomputed_blueprints"]) == 4
    # Importing the same file again now finds the same outcome: no new version.
    again = import_file("WorkloadIdentitySecurityAgent.yaml")
    assert not again.created and again.blueprint.version == 1 and again.unknown_skills == []


# --- versions -----------------------------------------------------------------------------------------------


def test_r15_importing_the_same_file_again_creates_no_new_version():
    first = import_file("DLPIncidentResponseAgent.yaml")
    events = AuditEvent.objects.count()
    again = import_file("DLPIncidentResponseAgent.yaml")
    assert not again.created and again.blueprint.pk == first.blueprint.pk
    assert (again.added, again.removed, again.previous) == ([], [], None)
    assert Blueprint.objects.filter(name="DLPIncidentResponseAgent").count() == 1
    assert AuditEvent.objects.count() == events


def test_r15_a_changed_manifest_creates_the_next_version_with_the_permission_diff():
    v1 = import_file("CVEBriefing.yaml").blueprint
    manifest = loaded("CVEBriefing.yaml")
    manifest["SkillGroups"][0]["Skills"][0]["ChildSkills"].append("GetDefenderIncidents")

    v2 = import_dict(manifest, "CVEBriefing.yaml")
    assert v2.created and v2.blueprint.version == 2 and v2.previous.pk == v1.pk
    assert v2.added == ["SecurityAlert.Read.All", "SecurityIncident.Read.All"] and v2.removed == []
    assert v2.blueprint.permission_digest != v1.permission_digest

    manifest["SkillGroups"][0]["Skills"][0]["ChildSkills"] = ["GetDefenderIncidents"]
    v3 = import_dict(manifest, "CVEBriefing.yaml")
    assert v3.blueprint.version == 3
    assert (v3.added, v3.removed) == ([], ["ThreatIntelligence.Read.All", "Vulnerability.Read.All"])
    # R3: an earlier complete version keeps its permission set.
    assert names_of(Blueprint.objects.get(pk=v1.pk).required_permissions) == {"ThreatIntelligence.Read.All",
                                                                              "Vulnerability.Read.All"}
    event = AuditEvent.objects.filter(action="blueprint.import").latest("id")
    assert event.before == {"version": 2, "permissions": ["SecurityAlert.Read.All", "SecurityIncident.Read.All",
                                                          "ThreatIntelligence.Read.All", "Vulnerability.Read.All"]}


def test_a_changed_description_alone_is_a_new_version_with_no_permission_diff():
    import_file("CVEBriefing.yaml")
    manifest = loaded("CVEBriefing.yaml")
    manifest["Descriptor"]["Description"] = "Shorter."
    result = import_dict(manifest)
    assert result.created and result.blueprint.version == 2 and (result.added, result.removed) == ([], [])
    assert result.blueprint.description == "Shorter."


# --- publishers ---------------------------------------------------------------------------------------------


def test_r2_r14_publisher_kind_comes_from_the_manifest_unless_overridden():
    assert import_dict(minimal()).blueprint.publisher_kind == "organisation"
    partner = minimal(AgentDefinitions=[{"Name": "Tiny", "Publisher": "Tanium"}])
    partner["Descriptor"]["Name"] = "TaniumAgent"
    blueprint = import_dict(partner).blueprint
    assert (blueprint.publisher.name, blueprint.publisher_kind) == ("Tanium", "partner")

    overridden = import_file("ConditionalAccessPolicyDriftAgent.yaml", publisher_kind="partner").blueprint
    assert overridden.publisher_kind == "partner"
    assert Publisher.objects.get(name="Microsoft").kind == "microsoft"  # the publisher row keeps its kind
    # The same file with a different publisher kind is a different blueprint version.
    again = import_file("ConditionalAccessPolicyDriftAgent.yaml")
    assert again.created and again.blueprint.version == 2 and again.blueprint.publisher_kind == "microsoft"
    with pytest.raises(ValidationError, match="not a publisher kind"):
        import_file("CVEBriefing.yaml", publisher_kind="vendor")


# --- formats ------------------------------------------------------------------------------------------------


def test_a_json_manifest_imports_like_its_yaml():
    manifest = loaded("WorkloadIdentitySecurityAgent.yaml")
    from_json = manifests.blueprint_import(actor=None, data=json.dumps(manifest, indent=2).encode(),
                                           filename="WorkloadIdentitySecurityAgent.json")
    assert from_json.created and from_json.unknown_skills == ["GetEntraData"]
    from_yaml = import_file("WorkloadIdentitySecurityAgent.yaml")
    assert not from_yaml.created and from_yaml.blueprint.pk == from_json.blueprint.pk


@pytest.mark.parametrize("filename", sorted(REFERENCE))
def test_export_round_trips_to_the_same_manifest_digest(filename):
    blueprint = import_file(filename).blueprint
    exported = manifests.blueprint_export_yaml(blueprint)
    assert exported.startswith("Descriptor:\n")
    reparsed = manifests.parse_manifest(exported.encode(), "exported.yaml")
    assert reparsed == loaded(filename)
    assert manifests.manifest_digest(reparsed) == blueprint.manifest_digest
    again = manifests.blueprint_import(actor=None, data=exported.encode(), filename="exported.yaml")
    assert not again.created and again.blueprint.pk == blueprint.pk


def test_child_skills_may_name_their_skillset_and_the_required_skillsets_win():
    qualified = minimal()
    qualified["SkillGroups"][0]["Skills"][0]["ChildSkills"] = ["Entra.GetEntraRiskyUsers", "M365.GetDefenderIncidents"]
    result = import_dict(qualified)
    assert result.unknown_skills == [] and result.blueprint.is_complete

    # A skill of the same name in another skillset: the manifest's RequiredSkillsets decide which one is meant.
    catalog.skill_resolve_unknown(actor=None, name="GetEntraRiskyUsers", skillset="M365",
                                  permissions=["SecurityAlert.Read.All"])
    for required, expected in ((["Entra"], "Entra"), (["M365"], "M365")):
        manifest = minimal()
        manifest["Descriptor"]["Name"] = f"Prefers{expected}"
        manifest["AgentDefinitions"][0]["RequiredSkillsets"] = required
        blueprint = import_dict(manifest).blueprint
        assert BlueprintSkill.objects.get(blueprint=blueprint).skill.skillset.name == expected


def test_a_child_that_is_an_agent_defined_in_the_same_manifest_is_not_a_catalog_skill():
    manifest = minimal()
    manifest["SkillGroups"][0]["Skills"][0]["ChildSkills"] = ["Helper", "GetEntraRiskyUsers"]
    manifest["SkillGroups"].append({"Format": "Agent", "Skills": [{"Name": "Helper",
                                                                   "ChildSkills": ["GetEntraAuditLogs"]}]})
    result = import_dict(manifest)
    assert result.unknown_skills == []
    assert set(BlueprintSkill.objects.filter(blueprint=result.blueprint).values_list("name", flat=True)) == {
        "GetEntraRiskyUsers", "GetEntraAuditLogs"}
    assert names_of(result.blueprint.required_permissions) == {"IdentityRiskyUser.Read.All", "AuditLog.Read.All"}


def test_a_scheduled_trigger_makes_an_autonomous_blueprint():
    manifest = minimal()
    manifest["AgentDefinitions"][0]["Triggers"][0]["DefaultPollPeriodSeconds"] = 3600
    assert import_dict(manifest).blueprint.kind == "autonomous"


# --- malformed files ----------------------------------------------------------------------------------------


def _dump(manifest) -> bytes:
    return yaml.safe_dump(manifest).encode()


def _with(path: str, value) -> bytes:
    """A valid manifest with one value replaced, e.g. ``_with("SkillGroups.0.Skills", {...})``."""
    manifest = minimal()
    *parents, last = path.split(".")
    target = manifest
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return _dump(manifest)


def _without(key: str) -> bytes:
    manifest = minimal()
    del manifest[key]
    return _dump(manifest)


ALIAS_BOMB = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n".encode()
    for i in range(6))

MALFORMED = {
    "bad YAML": (b"Descriptor:\n  Name: [unclosed\n", "bad.yaml", r"not valid YAML: .* at line \d+, column \d+"),
    "bad JSON": (b'{"Descriptor": {"Name": "x",}\n}', "bad.json", r"not valid JSON: .* at line 1, column 29"),
    "empty": (b"  \n", "empty.yaml", r"the file is empty"),
    "a list at the top": (b"- Descriptor: {}\n", "list.yaml", r"top level must be a mapping"),
    "missing Descriptor": (_without("Descriptor"), "x.yaml", r"Descriptor is missing"),
    "Descriptor.Name not text": (_with("Descriptor.Name", 42), "x.yaml", r"Descriptor\.Name must be text"),
    "Descriptor.Name missing": (_with("Descriptor", {"DisplayName": "x"}), "x.yaml", r"Descriptor\.Name is missing"),
    "AgentDefinitions a mapping": (_with("AgentDefinitions", {"Name": "x"}), "x.yaml",
                                   r"AgentDefinitions must be a list of mappings"),
    "AgentDefinitions of text": (_with("AgentDefinitions", ["x"]), "x.yaml",
                                 r"AgentDefinitions must be a list of mappings"),
    "SkillGroups text": (_with("SkillGroups", "skills"), "x.yaml", r"SkillGroups must be a list"),
    "Skills a mapping": (_with("SkillGroups.0.Skills", {"Name": "x"}), "x.yaml",
                         r"SkillGroups\[0\]\.Skills must be a list"),
    "ChildSkills of numbers": (_with("SkillGroups.0.Skills.0.ChildSkills", [1, "GetEntraRiskyUsers"]), "x.yaml",
                               r"SkillGroups\[0\]\.Skills\[0\]\.ChildSkills\[0\] must be a skill name"),
    "ChildSkills text": (_with("SkillGroups.0.Skills.0.ChildSkills", "GetEntraRiskyUsers"), "x.yaml",
                         r"ChildSkills must be a list of skill names"),
    "Inputs text": (_with("SkillGroups.0.Skills.0.Inputs", "query"), "x.yaml",
                    r"SkillGroups\[0\]\.Skills\[0\]\.Inputs must be a list"),
    "Input without a name": (_with("SkillGroups.0.Skills.0.Inputs", [{"Description": "d"}]), "x.yaml",
                             r"Inputs\[0\]\.Name is missing"),
    "Input Required not a flag": (_with("SkillGroups.0.Skills.0.Inputs", [{"Name": "q", "Required": "yes please"}]),
                                  "x.yaml", r"Inputs\[0\]\.Required must be true or false"),
    "negative poll period": (_with("AgentDefinitions.0.Triggers.0.DefaultPollPeriodSeconds", -5), "x.yaml",
                             r"AgentDefinitions\[0\]\.Triggers\[0\]\.DefaultPollPeriodSeconds must be a whole "
                             r"number ≥ 0"),
    "poll period as text": (_with("AgentDefinitions.0.Triggers.0.DefaultPollPeriodSeconds", "60s"), "x.yaml",
                            r"DefaultPollPeriodSeconds must be a whole number ≥ 0 \(found the text '60s'\)"),
    "10 MB of junk": (b"x" * (10 * 1024 * 1024), "junk.yaml", r"the file is 10\.0 MB; manifests are at most 1 MB"),
    "not UTF-8": ("Descriptor:\n  Name: Café\n".encode("latin-1"), "latin.yaml", r"not UTF-8 text"),
    "alias bomb": (ALIAS_BOMB, "bomb.yaml", r"more than 100,000 values"),
    "binary value": (b"Descriptor: {Name: x}\nAgentDefinitions: [{Icon: !!binary aGVsbG8=}]\n", "x.yaml",
                     r"AgentDefinitions\[0\]\.Icon holds a bytes value"),
    "non-text key": (b"Descriptor: {Name: x, 1: one}\nAgentDefinitions: [{}]\n", "x.yaml", r"keys must be text"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_manifest_is_refused_with_a_message_naming_the_problem_and_creates_nothing(case):
    data, filename, message = MALFORMED[case]
    blueprints, events = Blueprint.objects.count(), AuditEvent.objects.count()
    with pytest.raises(ManifestError, match=message):
        manifests.blueprint_import(actor=None, data=data, filename=filename)
    assert (Blueprint.objects.count(), AuditEvent.objects.count()) == (blueprints, events)


def test_every_problem_of_a_manifest_is_named_at_once():
    manifest = minimal()
    manifest["AgentDefinitions"][0]["Triggers"][0]["DefaultPollPeriodSeconds"] = 1.5
    manifest["SkillGroups"][0]["Skills"][0]["ChildSkills"] = [None]
    with pytest.raises(ManifestError) as error:
        manifests.parse_manifest(_dump(manifest), "x.yaml")
    assert len(error.value.problems) == 2


def test_a_valid_manifest_parses_to_its_plain_data_whatever_the_format():
    assert manifests.parse_manifest(_dump(minimal()), "ok.yaml") == minimal()
    assert manifests.parse_manifest(json.dumps(minimal()).encode(), "ok.json") == minimal()
    assert manifests.parse_manifest(json.dumps(minimal()).encode(), "no-extension") == minimal()
    dated = manifests.parse_manifest(b"Descriptor: {Name: x, Released: 2025-01-31}\nAgentDefinitions: [{}]\n", "x")
    assert dated["Descriptor"]["Released"] == "2025-01-31"  # an unquoted YAML date is kept as its text


# --- who may import -----------------------------------------------------------------------------------------


def test_r10_members_build_so_contributors_import_but_people_without_a_workspace_do_not(world):
    by_contributor = import_file("CVEBriefing.yaml", actor=world.contributor).blueprint  # Custom → organisation
    assert by_contributor.imported_by == world.contributor
    outsider = UserFactory(username="outsider")
    with pytest.raises(PermissionDenied):
        import_file("CVEBriefing.yaml", actor=outsider, publisher_kind="partner")
    assert Blueprint.objects.count() == 1


def test_r14_only_a_global_administrator_imports_as_microsoft(world):
    """Anyone can write 'Publisher: Microsoft'; trusting it would skip partner approval and grant identities."""
    for actor in (world.owner, world.inherited, world.contributor):
        with pytest.raises(PermissionDenied, match="Global Administrator"):
            import_file("DLPIncidentResponseAgent.yaml", actor=actor)
    assert not Blueprint.objects.exists()
    as_partner = import_file("DLPIncidentResponseAgent.yaml", actor=world.owner, publisher_kind="partner").blueprint
    by_ga = import_file("WorkloadIdentitySecurityAgent.yaml", actor=world.ga).blueprint
    assert (as_partner.publisher_kind, by_ga.publisher_kind) == ("partner", "microsoft")
    assert AuditEvent.objects.filter(action="blueprint.import", actor=world.owner).count() == 1


# --- the command --------------------------------------------------------------------------------------------


def test_import_manifest_command_imports_each_file_and_reports_one_line_per_file():
    files = [str(MANIFESTS / f) for f in sorted(REFERENCE)]
    out = StringIO()
    call_command("import_manifest", *files, stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 6
    assert any(line.endswith("CVEBriefing.yaml: CVEBriefing v1 created (organisation, 1 products); permissions: "
                             "+ThreatIntelligence.Read.All +Vulnerability.Read.All") for line in lines)
    assert sum("incomplete, unknown skills: GetEntraData" in line for line in lines) == 4
    assert Blueprint.objects.count() == 6

    again = StringIO()
    call_command("import_manifest", files[0], stdout=again)
    assert again.getvalue().strip().endswith("CVEBriefing v1 unchanged")


def test_import_manifest_command_shows_the_diff_and_honours_the_publisher_kind(tmp_path):
    call_command("import_manifest", str(MANIFESTS / "CVEBriefing.yaml"), stdout=StringIO())
    manifest = loaded("CVEBriefing.yaml")
    manifest["SkillGroups"][0]["Skills"][0]["ChildSkills"].append("GetDefenderIncidents")
    changed = tmp_path / "CVEBriefing.yaml"
    changed.write_bytes(_dump(manifest))
    out = StringIO()
    call_command("import_manifest", str(changed), "--publisher-kind", "partner", stdout=out)
    assert "CVEBriefing v2 created (partner" in out.getvalue()
    assert "since v1: +SecurityAlert.Read.All +SecurityIncident.Read.All" in out.getvalue()


def test_import_manifest_command_continues_past_a_bad_file_and_fails_at_the_end(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_bytes(b"Descriptor: [unclosed\n")
    missing = tmp_path / "missing.yaml"
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match=r"2 of 3 files failed: .*broken\.yaml, .*missing\.yaml"):
        call_command("import_manifest", str(bad), str(MANIFESTS / "CVEBriefing.yaml"), str(missing),
                     stdout=out, stderr=err)
    assert "broken.yaml: the file is not valid YAML" in err.getvalue()
    assert "missing.yaml: cannot read it" in err.getvalue()
    assert "CVEBriefing v1 created" in out.getvalue()
    assert list(Blueprint.objects.values_list("name", flat=True)) == ["CVEBriefing"]


def test_import_manifest_exits_non_zero_for_a_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{")
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "import_manifest", str(bad)])
    assert exit_info.value.code == 1
    assert "bad.json" in capsys.readouterr().err


def test_every_reference_skill_resolves_to_a_catalog_skill_except_GetEntraData():
    children = {n for f in REFERENCE for n in manifests._child_skill_names(loaded(f))}
    found = set(Skill.objects.filter(name__in=children).values_list("name", flat=True))
    assert children - found == {"GetEntraData"}
