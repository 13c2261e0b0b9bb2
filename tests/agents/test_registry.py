"""Registry services: R1–R8 and R10 told as stories."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.sites import site as admin_site
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import RequestFactory
from django.utils import timezone

from agents import credentials, policy, registry
from agents.models import Agent, AgentUser, Credential, PermissionGrant
from portal import directory
from portal.models import AuditEvent, DirectoryRole, User
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db


@pytest.fixture
def blueprint(db):
    return make_blueprint("HygieneAgent", permissions=("User.Read.All", "Application.Read.All"))


def _create(world, blueprint, name="hygiene", actor=None, **extra):
    extra.setdefault("sponsors", [world.owner])
    extra.setdefault("owners", [world.owner_b])
    spec = agent_spec(blueprint, name, **extra)
    return registry.agent_create(actor=actor or world.owner, workspace=world.alpha, spec=spec)


def _problems(excinfo) -> dict[str, str]:
    return {column: message for _row, column, message in excinfo.value.problems}


def test_r1_user_account_agent_follows_its_user_and_stops_when_the_user_is_disabled(world, blueprint):
    runner = UserFactory(username="runner")
    result = _create(world, blueprint, identity_type="user_account", run_as_user=runner)
    agent = result.agent
    assert result.client_secret == "" and not PermissionGrant.objects.filter(identity__agent=agent).exists()
    assert agent.is_operational
    directory.user_deactivate(actor=world.ga, user=runner)
    agent = Agent.objects.select_related("run_as_user").get(pk=agent.pk)
    assert not agent.is_operational and "runner is disabled" in agent.stop_reason


def test_r1_identity_type_needs_a_matching_run_as_user(world, blueprint):
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, blueprint, identity_type="user_account")
    assert "user account" in _problems(excinfo)["identity_type"]


def test_r2_agent_identity_only_for_microsoft_blueprints_by_default(world, settings):
    partner = make_blueprint("PartnerAgent", publisher_kind="partner", permissions=())
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, partner)
    assert "run it as an existing user account" in _problems(excinfo)["identity_type"]
    assert not Agent.objects.exists()
    settings.AGENT_IDENTITY_PUBLISHER_KINDS = ["microsoft", "partner"]
    assert _create(world, partner).client_id


def test_r3_an_agent_identity_gets_its_blueprints_permissions_automatically(world, blueprint):
    result = _create(world, blueprint)
    names = set(PermissionGrant.objects.filter(identity__agent=result.agent).values_list("permission__name",
                                                                                        flat=True))
    assert names == {"User.Read.All", "Application.Read.All"}
    assert PermissionGrant.objects.filter(identity__agent=result.agent, permission__kind="application").count() == 2


def test_r3_no_path_changes_or_removes_automatic_permissions(world, blueprint, client):
    result = _create(world, blueprint)
    grant = PermissionGrant.objects.filter(identity__agent=result.agent).first()
    other = grant.permission.__class__.objects.get(name="Policy.Read.All", kind="application")
    grant.permission = other
    with pytest.raises(PermissionError):  # model save
        grant.save()
    with pytest.raises(PermissionError):  # model delete
        grant.delete()
    with pytest.raises(PermissionError):  # queryset update
        PermissionGrant.objects.filter(pk=grant.pk).update(permission=other)
    with pytest.raises(PermissionError):  # queryset delete
        PermissionGrant.objects.filter(pk=grant.pk).delete()
    request = RequestFactory().get("/admin/")
    request.user = world.ga
    grant_admin = admin_site._registry[PermissionGrant]  # admin: no add, change or delete
    assert not (grant_admin.has_add_permission(request) or grant_admin.has_change_permission(request)
                or grant_admin.has_delete_permission(request))
    client.force_login(world.owner)  # API: the agent resource has no update at all
    for method in ("patch", "put", "delete"):
        response = getattr(client, method)(f"/api/v1/agents/{result.agent.pk}/", data={"permissions": []},
                                           content_type="application/json")
        assert response.status_code == 405, method
    assert not hasattr(registry, "grant_remove") and not hasattr(registry, "grant_change")
    assert PermissionGrant.objects.filter(identity__agent=result.agent, ended_at__isnull=True).count() == 2


def test_r4_privileged_permissions_never_reach_an_agent(world):
    risky = make_blueprint("RiskyAgent", permissions=("User.Read.All", "RoleManagement.ReadWrite.Directory"))
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, risky)
    assert "RoleManagement.ReadWrite.Directory" in _problems(excinfo)["blueprint"]
    assert not Agent.objects.exists()


def test_r4_an_agent_user_can_never_hold_a_privileged_role(world, blueprint):
    agent_user = AgentUser.objects.get(identity__agent=_create(world, blueprint).agent).user
    with pytest.raises(ValidationError, match="can never be held by an agent"):
        directory.role_assign(actor=world.ga, user=agent_user,
                              role=DirectoryRole.objects.get(key="global-administrator"))


def test_r5_retirement_leaves_nothing_active(world, blueprint):
    agent = _create(world, blueprint).agent
    registry.credential_rotate(actor=world.owner, agent=agent)
    preview = registry.retirement_preview(agent)
    assert len(preview["credentials"]) == 2 and len(preview["grants"]) == 2
    counts = registry.agent_retire(actor=world.owner, agent=agent)
    assert counts["credentials_revoked"] == 2 and counts["grants_ended"] == 2
    now = timezone.now()
    assert not [c for c in Credential.objects.filter(identity__agent=agent) if c.is_active(now)]
    assert not PermissionGrant.objects.filter(identity__agent=agent, ended_at__isnull=True).exists()
    assert not AgentUser.objects.get(identity__agent=agent).user.is_active
    agent.refresh_from_db()
    assert agent.status == "retired" and agent.retired_at
    assert Credential.objects.filter(identity__agent=agent).count() == 2  # records kept
    with pytest.raises(ValidationError):
        registry.agent_retire(actor=world.owner, agent=agent)  # irreversible, once
    with pytest.raises(ValidationError):
        registry.agent_enable(actor=world.owner, agent=agent)
    with pytest.raises(ValidationError):
        registry.credential_rotate(actor=world.owner, agent=agent)
    event = AuditEvent.objects.get(action="agent.retire", target_id=str(agent.pk))
    assert event.after["credentials_revoked"] == 2


def test_r5_contributor_cannot_retire_a_workspace_agent(world, blueprint):
    agent = _create(world, blueprint).agent
    with pytest.raises(PermissionDenied):
        registry.agent_retire(actor=world.contributor, agent=agent)


def test_r6_agent_user_is_one_to_one_passwordless_and_follows_its_agent(world, blueprint):
    agent = _create(world, blueprint).agent
    agent_user = AgentUser.objects.select_related("user").get(identity__agent=agent)
    user = agent_user.user
    assert user.kind == "agent_user" and not user.has_usable_password() and user.is_active
    registry.agent_disable(actor=world.owner, agent=agent)
    assert not User.objects.get(pk=user.pk).is_active
    registry.agent_enable(actor=world.owner, agent=agent)
    assert User.objects.get(pk=user.pk).is_active
    with pytest.raises(Exception):  # noqa: B017 - one agent user per identity, enforced by the database
        AgentUser.objects.create(identity=agent_user.identity, user=UserFactory(kind="agent_user"))


def test_r6_agent_users_are_labelled_in_the_directory(world, blueprint, client):
    agent = _create(world, blueprint).agent
    username = AgentUser.objects.get(identity__agent=agent).user.username
    client.force_login(world.ga)
    body = client.get(f"/directory/users/?q={username}").content.decode()
    assert username in body and "Agent user" in body


def test_r7_an_agent_needs_an_active_sponsor_and_an_owner(world, blueprint):
    gone = UserFactory(username="gone", is_active=False)
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, blueprint, sponsors=[gone], owners=[])
    problems = _problems(excinfo)
    assert "deactivated" in problems["sponsors"] and "at least one owner is required" in problems["owners"]


def test_r7_the_last_sponsor_and_owner_cannot_be_removed(world, blueprint):
    agent = _create(world, blueprint).agent
    with pytest.raises(ValidationError, match="keeps at least one"):
        registry.agent_person_remove(actor=world.owner, agent=agent, user=world.owner, role=policy.SPONSOR_AGENT)
    registry.agent_person_add(actor=world.owner, agent=agent, user=world.newcomer, role=policy.SPONSOR_AGENT)
    registry.agent_person_remove(actor=world.owner, agent=agent, user=world.owner, role=policy.SPONSOR_AGENT)
    assert [u.username for u in registry.people_of(agent)[policy.SPONSOR_AGENT]] == ["newcomer"]
    with pytest.raises(ValidationError, match="keeps at least one"):
        registry.agent_person_remove(actor=world.owner, agent=agent, user=world.owner_b, role=policy.OWN_AGENT)


def test_r8_an_expired_agent_is_inactive_before_any_job_runs(world, blueprint):
    agent = _create(world, blueprint, expires_at=timezone.now() + timedelta(hours=1)).agent
    assert agent.is_operational
    later = timezone.now() + timedelta(hours=2)
    assert agent.is_expired(later)
    Agent.objects.filter(pk=agent.pk).update(expires_at=timezone.now() - timedelta(seconds=1),
                                             created_at=timezone.now() - timedelta(days=1))
    agent.refresh_from_db()
    assert not agent.is_operational and "expired" in agent.stop_reason


def test_r8_expiry_must_be_in_the_future(world, blueprint):
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, blueprint, expires_at=timezone.now() - timedelta(days=1))
    assert "future" in _problems(excinfo)["expires_at"]


def test_r10_contributors_set_up_at_user_scope_only(world, blueprint):
    with pytest.raises(registry.ProvisioningError) as excinfo:
        _create(world, blueprint, actor=world.contributor, scope="workspace")
    assert "user scope only" in _problems(excinfo)["scope"]
    agent = _create(world, blueprint, actor=world.contributor, scope="user", name="mine",
                    sponsors=[world.contributor], owners=[world.contributor]).agent
    assert agent.scope == "user" and agent.created_by == world.contributor


def test_r10_visibility_follows_scope_and_workspace(world, blueprint):
    shared = _create(world, blueprint, name="shared").agent
    private = _create(world, blueprint, actor=world.owner_b, name="owner-b-private", scope="user",
                      sponsors=[world.owner_b], owners=[world.owner_b]).agent
    mine = _create(world, blueprint, actor=world.contributor, name="mine", scope="user",
                   sponsors=[world.contributor], owners=[world.contributor]).agent
    assert set(policy.agents_visible_to(world.contributor)) == {shared, mine}
    assert set(policy.agents_visible_to(world.owner)) == {shared, private, mine}
    assert set(policy.agents_visible_to(world.inherited)) == {shared, private, mine}
    assert not policy.agents_visible_to(world.other).exists()


def test_sponsors_disable_and_enable_but_only_owners_undo_an_owners_disable(world, blueprint):
    sponsor = world.newcomer
    agent = _create(world, blueprint, sponsors=[sponsor]).agent
    registry.agent_disable(actor=sponsor, agent=agent)
    registry.agent_enable(actor=sponsor, agent=agent)
    registry.agent_disable(actor=world.owner_b, agent=agent)  # an agent owner
    with pytest.raises(PermissionDenied, match="owner"):
        registry.agent_enable(actor=sponsor, agent=agent)
    registry.agent_enable(actor=world.owner_b, agent=agent)
    with pytest.raises(PermissionDenied):
        registry.agent_disable(actor=world.other, agent=agent)


def test_credentials_are_random_hashed_shown_once_and_rotate_with_overlap(world, blueprint):
    result = _create(world, blueprint)
    secret = result.client_secret
    assert secret.startswith("aip_") and len(secret) >= 4 + 43  # 256 bits, base64url
    stored = Credential.objects.get(identity__agent=result.agent)
    assert stored.secret_hash == credentials.hash_secret(secret) and secret not in stored.secret_hash
    dumped = str(list(AuditEvent.objects.values("before", "after")))
    assert secret not in dumped
    new, new_secret = registry.credential_rotate(actor=world.owner, agent=result.agent)
    stored.refresh_from_db()
    assert stored.replaced_by == new and stored.expires_at <= timezone.now() + timedelta(hours=24, seconds=5)
    assert stored.is_active() and new.is_active() and new_secret != secret
    registry.credential_revoke(actor=world.owner, credential=stored)
    stored.refresh_from_db()
    assert not stored.is_active()
    with pytest.raises(PermissionDenied):
        registry.credential_rotate(actor=world.contributor, agent=result.agent)


def test_provisioning_many_agents_runs_a_bounded_number_of_queries(world, blueprint):
    """Inserts are batched: ten times the agents cost a few more statements (SQLite caps the parameters of one
    INSERT, so its batches are smaller), never a statement per agent."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def provision(prefix: str, n: int) -> int:
        specs = [agent_spec(blueprint, f"{prefix}-{i}", sponsors=[world.owner], owners=[world.owner_b])
                 for i in range(n)]
        with CaptureQueriesContext(connection) as ctx:
            assert len(registry.agents_provision(actor=world.owner, workspace=world.alpha, specs=specs)) == n
        return len(ctx.captured_queries)

    small, large = provision("small", 50), provision("large", 500)
    assert large <= small + 40, (small, large)
    assert large < 500 / 5
    assert AuditEvent.objects.filter(action="agent.create").count() == 550
