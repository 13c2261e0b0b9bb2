"""R10 (owner vs contributor), R11 (inherited owners) and R13's premise (platform roles grant no data rights)."""

import pytest

from portal import rbac
from portal.models import Permission, Workspace
from tests.factories import UserFactory, grant_role

pytestmark = pytest.mark.django_db


def test_r10_owner_holds_every_platform_permission_in_their_workspace(world):
    for perm in rbac.ROLE_PERMISSIONS["owner"]:
        assert rbac.has_workspace_perm(world.owner, world.alpha, perm), perm
    assert rbac.workspace_role(world.owner, world.alpha) == "owner"


def test_r10_contributor_runs_agents_and_publishes_only_at_user_scope(world):
    assert rbac.has_workspace_perm(world.contributor, world.alpha, rbac.RUN_AGENTS)
    assert rbac.has_workspace_perm(world.contributor, world.alpha, rbac.PUBLISH_USER_SCOPE)
    for perm in (rbac.SETUP_AGENTS, rbac.PUBLISH_WORKSPACE_SCOPE, rbac.MANAGE_MEMBERS, rbac.CHANGE_WORKSPACE):
        assert not rbac.has_workspace_perm(world.contributor, world.alpha, perm), perm
    assert rbac.workspace_role(world.contributor, world.alpha) == "contributor"


def test_r10_roles_are_per_workspace(world):
    assert rbac.workspace_role(world.owner, world.beta) is None
    assert list(rbac.workspaces_visible_to(world.owner)) == [world.alpha]
    assert list(rbac.workspaces_visible_to(world.other)) == [world.beta]


def test_r10_platform_roles_are_guardian_object_permissions(world):
    """The role travels through the workspace's guardian groups, so guardian's own checker agrees."""
    from guardian.core import ObjectPermissionChecker

    checker = ObjectPermissionChecker(world.contributor)
    assert checker.has_perm("run_agents", world.alpha)
    assert not checker.has_perm("manage_members", world.alpha)
    assert not checker.has_perm("run_agents", world.beta)


@pytest.mark.parametrize("role_key", ["global-administrator", "security-administrator", "compliance-administrator"])
def test_r11_admin_roles_are_effective_owners_of_every_workspace(world, role_key):
    admin = UserFactory(username=f"x-{role_key}")
    assert rbac.workspace_role(admin, world.alpha) is None
    grant_role(admin, role_key)
    admin = type(admin).objects.get(pk=admin.pk)
    for workspace in Workspace.objects.all():
        assert rbac.workspace_role(admin, workspace) == "owner"
        owners = {o.user.username: o for o in rbac.effective_owners(workspace)}
        assert owners[admin.username].inherited
    sources = {o.user.username: o.sources for o in rbac.effective_owners(world.alpha)}
    assert sources["owner"] == ("explicit",)
    assert any("Administrator" in s for s in sources[admin.username])


def test_r11_security_reader_and_deactivated_admins_inherit_nothing(world):
    reader = UserFactory(username="reader")
    grant_role(reader, "security-reader")
    assert rbac.workspace_role(reader, world.alpha) is None
    assert rbac.can_read_all_audit(reader)
    world.ga.is_active = False
    world.ga.save(update_fields=["is_active"])
    assert "ga" not in {o.user.username for o in rbac.effective_owners(world.alpha)}


def test_r13_platform_roles_never_grant_data_permissions(world):
    """Owning a workspace gives no catalog permission: data rights come only from directory roles."""
    assert not Permission.objects.filter(roles__assignments__user=world.owner).exists()
    assert Permission.objects.filter(roles__assignments__user=world.inherited).exists()
