"""R20, protected attributes: the attributes of a protected attribute set are assigned, changed and removed only by
Global Administrators and Attribute Assignment Administrators — on the agent page, at set-up (wizard, API, bulk) and
through the services; owners and contributors keep the other attributes. Attribute sets are managed by Global
Administrators, audited."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from agents import attributes, registry
from agents.models import AttributeSet, AttributeValue
from portal.models import AuditEvent
from tests.factories import UserFactory, agent_spec, grant_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def governed(registry_world):
    """``registry_world`` with a protected "Governance" set holding ``tier`` and an agent assigned tier=restricted
    by a Global Administrator, plus an Attribute Assignment Administrator ``assigner``."""
    w = registry_world
    attributes.attribute_set_save(actor=w.ga, name="Governance", description="Decides access", protected=True,
                                  keys=["tier"])
    registry.agent_attribute_set(actor=w.ga, agent=w.agent, key="tier", value="restricted")
    w.assigner = UserFactory(username="assigner")
    grant_role(w.assigner, "attribute-assignment-administrator")
    return w


def _value(agent, key):
    return AttributeValue.objects.filter(agent=agent, key=key).values_list("value", flat=True).first()


def _events(action):
    return AuditEvent.objects.filter(action=action).count()


@pytest.mark.parametrize("change", ["change", "remove", "add"])
def test_r20_owner_cannot_set_change_or_remove_a_protected_attribute(governed, change):
    w = governed
    attributes.attribute_set_save(actor=w.ga, name="Governance", protected=True, keys=["tier", "clearance"],
                                  attribute_set=AttributeSet.objects.get(name="Governance"))
    events = AuditEvent.objects.count()
    for owner in (w.owner, w.owner_b):  # the workspace's owner and the agent's owner
        with pytest.raises(PermissionDenied, match="tier|clearance"):
            if change == "change":
                registry.agent_attribute_set(actor=owner, agent=w.agent, key="tier", value="unrestricted")
            elif change == "remove":
                registry.agent_attribute_remove(actor=owner, agent=w.agent, key="tier")
            else:
                registry.agent_attribute_set(actor=owner, agent=w.agent, key="clearance", value="top")
    assert _value(w.agent, "tier") == "restricted" and _value(w.agent, "clearance") is None
    assert AuditEvent.objects.count() == events


def test_r20_security_administrator_inherited_owner_cannot_either(governed):
    with pytest.raises(PermissionDenied):
        registry.agent_attribute_set(actor=governed.inherited, agent=governed.agent, key="tier", value="open")
    assert _value(governed.agent, "tier") == "restricted"


def test_r20_contributor_cannot_change_a_protected_attribute_of_their_own_user_scoped_agent(governed):
    w = governed
    mine = registry.agent_create(actor=w.contributor, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "contributor-agent", scope="user", sponsors=[w.contributor], owners=[w.contributor])).agent
    registry.agent_attribute_set(actor=w.assigner, agent=mine, key="tier", value="restricted")
    registry.agent_attribute_set(actor=w.contributor, agent=mine, key="team", value="blue")  # not protected: fine
    for attempt in (lambda: registry.agent_attribute_set(actor=w.contributor, agent=mine, key="tier", value="x"),
                    lambda: registry.agent_attribute_remove(actor=w.contributor, agent=mine, key="tier")):
        with pytest.raises(PermissionDenied):
            attempt()
    assert _value(mine, "tier") == "restricted" and _value(mine, "team") == "blue"


@pytest.mark.parametrize("who", ["ga", "assigner"])
def test_r20_global_and_attribute_assignment_administrators_set_change_and_remove_with_one_audit_event_each(
        governed, who):
    w = governed
    actor = getattr(w, who)
    registry.agent_attribute_set(actor=actor, agent=w.agent, key="tier", value="standard")
    changed = AuditEvent.objects.filter(action="agent.attribute_set").latest("id")
    assert (changed.actor, changed.before, changed.after) == (actor, {"tier": "restricted"}, {"tier": "standard"})
    assert registry.agent_attribute_remove(actor=actor, agent=w.agent, key="tier") is True
    removed = AuditEvent.objects.get(action="agent.attribute_remove")
    assert (removed.actor, removed.before, removed.after) == (actor, {"tier": "standard"}, None)
    assert _value(w.agent, "tier") is None
    assert registry.agent_attribute_remove(actor=actor, agent=w.agent, key="tier") is False  # nothing to remove
    assert _events("agent.attribute_remove") == 1


def test_r20_owners_keep_attributes_outside_protected_sets(governed):
    w = governed
    attributes.attribute_set_save(actor=w.ga, name="Organisation", protected=False, keys=["department"])
    registry.agent_attribute_set(actor=w.owner_b, agent=w.agent, key="department", value="SOC")
    registry.agent_attribute_set(actor=w.owner_b, agent=w.agent, key="free", value="1")
    assert registry.agent_attribute_remove(actor=w.owner_b, agent=w.agent, key="free")
    assert _value(w.agent, "department") == "SOC" and _value(w.agent, "free") is None


def test_r20_unprotecting_a_set_gives_its_attributes_back_to_the_owners(governed):
    w = governed
    attributes.attribute_set_save(actor=w.ga, name="Governance", protected=False, keys=["tier"],
                                  attribute_set=AttributeSet.objects.get(name="Governance"))
    registry.agent_attribute_set(actor=w.owner, agent=w.agent, key="tier", value="standard")
    assert _value(w.agent, "tier") == "standard"


def test_r20_setting_up_an_agent_with_a_protected_attribute_is_refused_for_owners(governed):
    w = governed
    with pytest.raises(ValidationError, match="tier is a protected attribute"):
        registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
            w.blueprint, "sneaky", sponsors=[w.owner], owners=[w.owner], attributes={"tier": "unrestricted"}))
    created = registry.agent_create(actor=w.ga, workspace=w.alpha, spec=agent_spec(
        w.blueprint, "governed", sponsors=[w.owner], owners=[w.owner], attributes={"tier": "restricted"})).agent
    assert _value(created, "tier") == "restricted"


def test_r20_api_set_up_with_a_protected_attribute_is_refused(client, governed):
    w = governed
    client.force_login(w.owner)
    response = client.post("/api/v1/agents/", {
        "workspace": "alpha", "blueprint": w.blueprint.pk, "name": "via-api", "identity_type": "agent_identity",
        "scope": "workspace", "sponsors": ["owner"], "owners": ["owner"], "attributes": {"tier": "unrestricted"},
    }, content_type="application/json")
    assert response.status_code == 400 and "tier is a protected attribute" in response.content.decode()
    assert not AttributeValue.objects.filter(value="unrestricted").exists()


def test_r20_a_bulk_file_with_a_protected_attribute_is_refused_on_that_row_for_owners(governed):
    from agents import bulk
    from agents.models import Agent

    w = governed
    text = ("blueprint,name,identity_type,scope,sponsors,owners,attributes,expires_at\n"
            "MatrixAgent,fine,agent_identity,workspace,owner,owner,team=blue,\n"
            "MatrixAgent,sneaky,agent_identity,workspace,owner,owner,tier=unrestricted,\n")
    with pytest.raises(registry.ProvisioningError) as excinfo:
        bulk.provision_file(actor=w.owner, workspace=w.alpha, stream=text, filename="agents.csv")
    assert [(row, column) for row, column, _ in excinfo.value.problems] == [(2, "attributes")]
    assert not Agent.objects.filter(name__in=["fine", "sneaky"]).exists()
    created = bulk.provision_file(actor=w.ga, workspace=w.alpha, stream=text, filename="agents.csv").created
    assert sorted(p.agent.name for p in created) == ["fine", "sneaky"]


# --- the agent page --------------------------------------------------------------------------------------------------


def test_r20_agent_page_shows_protected_attributes_read_only_to_owners(client, governed):
    w = governed
    registry.agent_attribute_set(actor=w.owner, agent=w.agent, key="team", value="blue")
    client.force_login(w.owner)
    page = client.get(f"/agents/{w.agent.pk}/").content.decode()
    tier_row = page.split('data-key="tier"', 1)[1].split("</li>", 1)[0]
    team_row = page.split('data-key="team"', 1)[1].split("</li>", 1)[0]
    assert "Governance" in tier_row and "protected" in tier_row and "Read-only" in tier_row
    assert 'name="remove"' not in tier_row and 'name="remove"' in team_row
    client.force_login(w.ga)
    tier_row = client.get(f"/agents/{w.agent.pk}/").content.decode().split('data-key="tier"', 1)[1].split("</li>")[0]
    assert "Read-only" not in tier_row and 'name="remove"' in tier_row


@pytest.mark.parametrize("data", [{"key": "tier", "value": "unrestricted"}, {"key": "tier", "remove": "1"},
                                  {"key": "tier", "value": "", "remove": "1"}])
def test_r20_a_forged_post_on_a_protected_attribute_is_403_and_changes_nothing(client, governed, data):
    w = governed
    events = AuditEvent.objects.count()
    client.force_login(w.owner_b)
    assert client.post(f"/agents/{w.agent.pk}/attributes/", data).status_code == 403
    assert _value(w.agent, "tier") == "restricted" and AuditEvent.objects.count() == events


def test_r20_attribute_assignment_administrator_sees_the_agent_and_sets_the_attribute_on_its_page(client, governed):
    w = governed
    client.force_login(w.assigner)
    assert client.get(f"/agents/{w.agent.pk}/").status_code == 200
    response = client.post(f"/agents/{w.agent.pk}/attributes/", {"key": "tier", "value": "standard"})
    assert response.status_code == 302 and _value(w.agent, "tier") == "standard"
    response = client.post(f"/agents/{w.agent.pk}/attributes/", {"key": "tier", "remove": "1"})
    assert response.status_code == 302 and _value(w.agent, "tier") is None


# --- attribute sets ------------------------------------------------------------------------------------------------


def test_r20_only_global_administrators_manage_attribute_sets_with_one_audit_event_each(governed):
    w = governed
    for actor in (w.owner, w.inherited, w.assigner):
        with pytest.raises(PermissionDenied):
            attributes.attribute_set_save(actor=actor, name="Mine", keys=["tier2"])
    governance = AttributeSet.objects.get(name="Governance")
    attributes.attribute_set_save(actor=w.ga, name="Governance", description="", protected=True,
                                  keys=["tier", "clearance"], attribute_set=governance)
    event = AuditEvent.objects.filter(action="attribute_set.update").get()
    assert event.before["keys"] == ["tier"] and event.after["keys"] == ["clearance", "tier"]
    assert AuditEvent.objects.filter(action="attribute_set.create").count() == 1


def test_r20_a_key_belongs_to_one_set_only(governed):
    with pytest.raises(ValidationError, match="already in the set Governance"):
        attributes.attribute_set_save(actor=governed.ga, name="Other", keys=["tier"])
    with pytest.raises(ValidationError, match="not a valid attribute name"):
        attributes.attribute_set_save(actor=governed.ga, name="Other", keys=["1bad"])


def test_r20_attribute_set_pages(client, governed):
    w = governed
    client.force_login(w.owner)
    listing = client.get("/agents/attribute-sets/").content.decode()
    assert "Governance" in listing and "tier" in listing and "New attribute set" not in listing
    assert client.post("/agents/attribute-sets/new/", {"name": "X", "keys": "a"}).status_code == 403
    client.force_login(w.ga)
    response = client.post("/agents/attribute-sets/new/", {"name": "Clearance", "protected": "on",
                                                           "keys": "clearance, level"})
    assert response.status_code == 302
    assert attributes.attribute_protection(["level"])["level"].protected
    governance = AttributeSet.objects.get(name="Governance")
    response = client.post(f"/agents/attribute-sets/{governance.pk}/edit/", {"name": "Governance",
                                                                              "keys": "tier, clearance"})
    assert response.status_code == 200 and "already in the set Clearance" in response.content.decode()
