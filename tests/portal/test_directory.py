"""Directory services and pages: users, managers, role assignments (R4, R6, R11), the demo seed."""

from io import StringIO

import pytest
from django.contrib.admin.sites import site as admin_site
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.test import RequestFactory

from portal import directory, rbac
from portal.models import AuditEvent, DirectoryRole, DirectoryRoleAssignment, User, Workspace, WorkspaceMembership
from tests.factories import UserFactory, grant_role

pytestmark = pytest.mark.django_db


def test_privileged_role_administrator_manages_the_directory_others_do_not(client, world):
    pra = UserFactory(username="pra")
    grant_role(pra, "privileged-role-administrator")
    client.force_login(pra)
    assert client.get("/directory/users/").status_code == 200
    assert client.get("/directory/roles/").status_code == 200
    assert rbac.workspace_role(pra, world.alpha) is None  # PRA manages roles but owns no workspace
    with pytest.raises(PermissionDenied):
        directory.user_create(actor=world.inherited, username="nope")


def test_r4_privileged_roles_never_go_to_agent_users(world):
    agent_user = UserFactory(username="agent-1", kind="agent_user")
    for role in DirectoryRole.objects.filter(privileged=True):
        with pytest.raises(ValidationError, match="privileged"):
            directory.role_assign(actor=world.ga, user=agent_user, role=role)
    assert not DirectoryRoleAssignment.objects.filter(user=agent_user).exists()


def test_r6_agent_users_get_no_usable_password(world):
    agent_user = directory.user_create(actor=world.ga, username="agent-2", kind="agent_user", password="ignored-pw-1")
    assert not agent_user.has_usable_password()
    with pytest.raises(ValidationError):
        directory.user_set_password(actor=world.ga, user=agent_user, password="another-long-password")


def test_manager_cycles_are_refused(world):
    directory.user_update(actor=world.ga, user=world.owner_b, display_name="", email="", manager=world.owner)
    with pytest.raises(ValidationError, match="cycle"):
        directory.user_update(actor=world.ga, user=world.owner, display_name="", email="", manager=world.owner_b)


def test_permission_catalog_holds_the_manifests_permissions_and_roles_carry_rights():
    from portal.models import Permission

    for name in ("Policy.Read.All", "User.Read.All", "AuditLog.Read.All", "IdentityRiskyUser.Read.All",
                 "DeviceManagementManagedDevices.Read.All", "SecurityIncident.Read.All", "Data.Read",
                 "InformationProtectionPolicy.Read.All", "Application.Read.All", "AccessReview.Read.All"):
        assert Permission.objects.filter(name=name, kind="application").exists(), name
    assert Permission.objects.get(name="RoleManagement.ReadWrite.Directory", kind="application").privileged
    products = set(Permission.objects.values_list("product", flat=True))
    assert {"entra", "defender", "intune", "sentinel", "purview"} <= products
    keys = set(DirectoryRole.objects.values_list("key", flat=True))
    assert {rbac.GLOBAL_ADMINISTRATOR, rbac.PRIVILEGED_ROLE_ADMINISTRATOR, rbac.SECURITY_ADMINISTRATOR,
            rbac.COMPLIANCE_ADMINISTRATOR, rbac.SECURITY_OPERATOR, rbac.SECURITY_READER} <= keys
    reader = DirectoryRole.objects.get(key=rbac.SECURITY_READER)
    assert reader.permissions.filter(name="SecurityIncident.Read.All").exists()
    assert not reader.permissions.filter(name__contains="ReadWrite").exists()


def test_admin_deactivate_action_goes_through_the_service(world):
    request = RequestFactory().post("/admin/")
    request.user = world.ga
    request._messages = type("M", (), {"add": lambda *a, **k: None})()
    model_admin = admin_site._registry[User]
    model_admin.deactivate(request, User.objects.filter(pk=world.newcomer.pk))
    assert not User.objects.get(pk=world.newcomer.pk).is_active
    assert AuditEvent.objects.filter(action="directory.user_deactivate", target_id=str(world.newcomer.pk)).exists()


def test_seed_demo_is_idempotent_and_prints_the_logins():
    out = StringIO()
    call_command("seed_demo", "--password", "pw", stdout=out)
    expected = {"ga", "secadmin", "owner", "owner2", "contributor", "contributor2", "idowner", "idowner2", "reader",
                "leaver"}  # leaver: a deactivated sponsor, so the orphan sweep has work in the demo
    assert set(User.objects.filter(kind="human").values_list("username", flat=True)) == expected
    assert User.objects.filter(kind="agent_user").exists()  # the demo registry's agent users
    for username in expected:
        assert username in out.getvalue()
    assert set(Workspace.objects.values_list("slug", flat=True)) == {"soc", "identity"}
    counts = (AuditEvent.objects.count(), WorkspaceMembership.objects.count(), DirectoryRoleAssignment.objects.count())
    call_command("seed_demo", "--password", "pw", stdout=StringIO())
    assert (AuditEvent.objects.count(), WorkspaceMembership.objects.count(),
            DirectoryRoleAssignment.objects.count()) == counts
    owner = User.objects.get(username="owner")
    soc, identity = Workspace.objects.get(slug="soc"), Workspace.objects.get(slug="identity")
    assert rbac.workspace_role(owner, soc) == "owner" and rbac.workspace_role(owner, identity) is None
    assert rbac.workspace_role(User.objects.get(username="contributor"), soc) == "contributor"
    assert rbac.workspace_role(User.objects.get(username="secadmin"), identity) == "owner"
    assert rbac.workspace_role(User.objects.get(username="reader"), soc) is None
    assert owner.check_password("pw")
