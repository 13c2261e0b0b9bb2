"""Membership services and R12: every workspace keeps at least two effective owners, even under a race."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from portal import directory, rbac, workspaces
from portal.models import AuditEvent, DirectoryRoleAssignment, User, WorkspaceMembership
from tests.factories import UserFactory, grant_role, make_workspace


def _membership(workspace, user) -> WorkspaceMembership:
    return WorkspaceMembership.objects.get(workspace=workspace, user=user)


def _owner_count(workspace) -> int:
    return rbac.effective_owner_counts([workspace.pk])[workspace.pk]


@pytest.fixture
def trio(db):
    """A workspace with three explicit owners and no inherited owners anywhere."""
    a, b, c = (UserFactory(username=n) for n in ("ann", "ben", "cat"))
    return make_workspace("trio", owners=[a, b, c]), a, b, c


@pytest.mark.django_db
def test_r12_workspace_cannot_be_created_with_fewer_than_two_owners():
    solo = UserFactory(username="solo")
    with pytest.raises(rbac.OwnerFloorError):
        make_workspace("lonely", owners=[solo])
    assert not AuditEvent.objects.filter(action="workspace.create").exists()


@pytest.mark.django_db
def test_r12_demoting_the_second_to_last_owner_is_refused(trio):
    workspace, a, b, c = trio
    workspaces.membership_change_role(actor=a, membership=_membership(workspace, c), role="contributor")
    with pytest.raises(rbac.OwnerFloorError, match="fewer than 2 effective owners"):
        workspaces.membership_change_role(actor=a, membership=_membership(workspace, b), role="contributor")
    assert _membership(workspace, b).role == "owner"
    assert _owner_count(workspace) == 2
    assert b.groups.filter(pk=workspace.owner_group_id).exists()  # guardian group untouched by the refusal


@pytest.mark.django_db
def test_r12_removing_the_second_to_last_owner_is_refused(trio):
    workspace, a, b, c = trio
    workspaces.membership_remove(actor=a, membership=_membership(workspace, c))
    events = AuditEvent.objects.count()
    with pytest.raises(rbac.OwnerFloorError):
        workspaces.membership_remove(actor=a, membership=_membership(workspace, b))
    assert WorkspaceMembership.objects.filter(workspace=workspace, user=b).exists()
    assert AuditEvent.objects.count() == events  # the refused change left no audit event


@pytest.mark.django_db
def test_r12_deactivating_an_owner_below_the_floor_is_refused(trio):
    workspace, a, b, c = trio
    ga = UserFactory(username="ga")
    grant_role(ga, "global-administrator")
    workspaces.membership_remove(actor=a, membership=_membership(workspace, c))
    # ga is an inherited owner: a, b and ga make three. Deactivating a leaves two: allowed.
    directory.user_deactivate(actor=ga, user=a)
    # b and ga remain; deactivating b would leave one.
    with pytest.raises(rbac.OwnerFloorError):
        directory.user_deactivate(actor=ga, user=b)
    assert User.objects.get(pk=b.pk).is_active


@pytest.mark.django_db
def test_r12_removing_an_inherited_owners_role_below_the_floor_is_refused():
    ga, secadmin, only = UserFactory(username="ga"), UserFactory(username="secadmin"), UserFactory(username="only")
    grant_role(ga, "global-administrator")
    grant_role(secadmin, "security-administrator")
    workspace = make_workspace("thin", owners=[only])  # one explicit + two inherited owners
    directory.role_unassign(actor=ga, assignment=DirectoryRoleAssignment.objects.get(user=secadmin))
    assert _owner_count(workspace) == 2
    ga_assignment = DirectoryRoleAssignment.objects.get(user=ga)
    pra = UserFactory(username="pra")
    grant_role(pra, "privileged-role-administrator")
    with pytest.raises(rbac.OwnerFloorError, match="Thin"):
        directory.role_unassign(actor=pra, assignment=ga_assignment)
    assert DirectoryRoleAssignment.objects.filter(pk=ga_assignment.pk).exists()


@pytest.mark.django_db
def test_r12_promotion_and_additions_are_never_blocked(trio):
    workspace, a, b, c = trio
    newcomer = UserFactory(username="newcomer")
    membership = workspaces.membership_add(actor=a, workspace=workspace, user=newcomer, role="contributor")
    workspaces.membership_change_role(actor=a, membership=membership, role="owner")
    assert _owner_count(workspace) == 4


@pytest.mark.django_db
def test_r10_contributor_cannot_change_members(world):
    with pytest.raises(PermissionDenied):
        workspaces.membership_add(actor=world.contributor, workspace=world.alpha, user=world.newcomer,
                                  role="contributor")
    with pytest.raises(PermissionDenied):
        workspaces.membership_change_role(actor=world.contributor,
                                          membership=_membership(world.alpha, world.contributor), role="owner")
    assert _membership(world.alpha, world.contributor).role == "contributor"


@pytest.mark.django_db
def test_r10_membership_changes_move_guardian_groups_and_are_audited(world):
    membership = workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=world.newcomer,
                                           role="contributor")
    newcomer = User.objects.get(pk=world.newcomer.pk)
    assert rbac.has_workspace_perm(newcomer, world.alpha, rbac.RUN_AGENTS)
    assert not rbac.has_workspace_perm(newcomer, world.alpha, rbac.SETUP_AGENTS)
    workspaces.membership_change_role(actor=world.owner, membership=membership, role="owner")
    newcomer = User.objects.get(pk=world.newcomer.pk)
    assert rbac.has_workspace_perm(newcomer, world.alpha, rbac.SETUP_AGENTS)
    workspaces.membership_remove(actor=world.owner, membership=membership)
    newcomer = User.objects.get(pk=world.newcomer.pk)
    assert not rbac.has_workspace_perm(newcomer, world.alpha, rbac.VIEW_WORKSPACE)
    actions = list(AuditEvent.objects.filter(workspace=world.alpha, actor=world.owner)
                   .order_by("id").values_list("action", flat=True))
    assert actions == ["workspace.member_add", "workspace.member_role_change", "workspace.member_remove"]
    change = AuditEvent.objects.get(action="workspace.member_role_change")
    assert change.before["role"] == "contributor" and change.after["role"] == "owner"


@pytest.mark.django_db
def test_agent_users_and_deactivated_people_get_no_platform_role(world):
    agent_user = UserFactory(username="agent-x", kind="agent_user")
    with pytest.raises(ValidationError, match="agent user"):
        workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=agent_user, role="contributor")
    with pytest.raises(ValidationError, match="already"):
        workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=world.contributor, role="owner")


@pytest.mark.django_db(transaction=True)
def test_r12_two_concurrent_demotions_leave_two_owners_on_postgres(postgres):
    """Two owners in two connections each demote a different one of the last three owners: one wins."""
    a, b, c = (UserFactory(username=n) for n in ("ann", "ben", "cat"))
    workspace = make_workspace("race", owners=[a, b, c])
    m_b, m_a = _membership(workspace, b), _membership(workspace, a)
    first_done = threading.Event()
    outcomes: dict[str, object] = {}

    def first():  # ann demotes ben, then holds her transaction open while cat tries
        try:
            with transaction.atomic():
                workspaces.membership_change_role(actor=User.objects.get(pk=a.pk), membership=m_b,
                                                  role="contributor")
                first_done.set()
                time.sleep(1.0)
            outcomes["first"] = "ok"
        except Exception as error:  # recorded for the assertion below
            outcomes["first"] = error
        finally:
            first_done.set()
            connection.close()

    def second():  # cat demotes ann while ann's transaction still holds the workspace row lock
        first_done.wait(10)
        started = time.monotonic()
        try:
            workspaces.membership_change_role(actor=User.objects.get(pk=c.pk), membership=m_a,
                                              role="contributor")
            outcomes["second"] = "ok"
        except Exception as error:
            outcomes["second"] = error
        finally:
            outcomes["second_waited"] = time.monotonic() - started
            connection.close()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert outcomes["first"] == "ok"
    assert isinstance(outcomes["second"], rbac.OwnerFloorError), outcomes["second"]
    assert outcomes["second_waited"] >= 0.5  # it really waited for the first transaction's row lock
    assert _owner_count(workspace) == 2
    assert set(WorkspaceMembership.objects.filter(workspace=workspace, role="owner")
               .values_list("user__username", flat=True)) == {"ann", "cat"}
    assert AuditEvent.objects.filter(action="workspace.member_role_change").count() == 1
