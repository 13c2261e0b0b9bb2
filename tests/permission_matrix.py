"""The permission matrix: every URL × persona → expected status. Later issues append their views to ``CASES``.

Statuses: ``LOGIN`` is a redirect to the sign-in page; 302 otherwise means the action succeeded and redirected;
404 means the object is invisible to that persona; 403 means visible but the action is not allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.urls import reverse

from portal.models import AuditEvent, DirectoryRole, DirectoryRoleAssignment, WorkspaceMembership

LOGIN = "login"


def expect(anonymous, contributor, owner, inherited_owner, global_admin, other_workspace) -> dict:
    """Expected status per persona, in the order of ``tests.conftest.PERSONAS``."""
    return {"anonymous": anonymous, "contributor": contributor, "owner": owner, "inherited_owner": inherited_owner,
            "global_admin": global_admin, "other_workspace": other_workspace}


@dataclass(frozen=True)
class Case:
    url_name: str
    method: str
    url: Callable  # world -> path
    expected: dict
    data: Callable = field(default=lambda w: {})
    label: str = ""

    @property
    def id(self) -> str:
        return f"{self.method} {self.label or self.url_name}"


def _membership(w, user):
    return WorkspaceMembership.objects.get(workspace=w.alpha, user=user).pk


def _contrib_membership_url(name):
    return lambda w: reverse(name, args=[w.alpha.slug, _membership(w, w.contributor)])


EVERYONE_OK = expect(LOGIN, 200, 200, 200, 200, 200)
DIRECTORY_ONLY = expect(LOGIN, 403, 403, 403, 200, 403)
DIRECTORY_WRITE = expect(LOGIN, 403, 403, 403, 302, 403)
ALPHA_VIEW = expect(LOGIN, 200, 200, 200, 200, 404)
ALPHA_MANAGE = expect(LOGIN, 403, 302, 302, 302, 404)
API_ALL = expect(403, 200, 200, 200, 200, 200)

CASES: list[Case] = [
    Case("login", "GET", lambda w: reverse("login"), expect(200, 302, 302, 302, 302, 302)),
    Case("logout", "POST", lambda w: reverse("logout"), expect(LOGIN, LOGIN, LOGIN, LOGIN, LOGIN, LOGIN)),
    Case("dashboard", "GET", lambda w: reverse("dashboard"), EVERYONE_OK),
    Case("healthz", "GET", lambda w: reverse("healthz"), expect(200, 200, 200, 200, 200, 200)),
    Case("workspace-list", "GET", lambda w: reverse("workspace-list"), EVERYONE_OK),
    Case("workspace-create", "GET", lambda w: reverse("workspace-create"), DIRECTORY_ONLY),
    Case("workspace-create", "POST", lambda w: reverse("workspace-create"), DIRECTORY_WRITE,
         data=lambda w: {"name": "Gamma", "owners": "owner, other"}),
    Case("workspace-switch", "POST", lambda w: reverse("workspace-switch"), expect(LOGIN, 302, 302, 302, 302, 404),
         data=lambda w: {"workspace": "alpha"}),
    Case("workspace-members", "GET", lambda w: reverse("workspace-members", args=["alpha"]), ALPHA_VIEW),
    Case("member-add", "POST", lambda w: reverse("member-add", args=["alpha"]), ALPHA_MANAGE,
         data=lambda w: {"user": "newcomer", "role": "contributor"}),
    Case("member-role", "POST", _contrib_membership_url("member-role"), ALPHA_MANAGE,
         data=lambda w: {"role": "owner"}),
    Case("member-remove", "GET", _contrib_membership_url("member-remove"), expect(LOGIN, 403, 200, 200, 200, 404)),
    Case("member-remove", "POST", _contrib_membership_url("member-remove"), ALPHA_MANAGE),
    Case("directory-users", "GET", lambda w: reverse("directory-users"), DIRECTORY_ONLY),
    Case("directory-user-create", "GET", lambda w: reverse("directory-user-create"), DIRECTORY_ONLY),
    Case("directory-user-create", "POST", lambda w: reverse("directory-user-create"), DIRECTORY_WRITE,
         data=lambda w: {"username": "fresh", "display_name": "Fresh Person"}),
    Case("directory-user", "GET", lambda w: reverse("directory-user", args=[w.newcomer.pk]), DIRECTORY_ONLY),
    Case("directory-user", "POST", lambda w: reverse("directory-user", args=[w.newcomer.pk]), DIRECTORY_WRITE,
         data=lambda w: {"display_name": "New Comer", "email": "", "manager": ""}),
    Case("directory-user-active", "POST", lambda w: reverse("directory-user-active", args=[w.newcomer.pk]),
         DIRECTORY_WRITE),
    Case("directory-role-assign", "POST", lambda w: reverse("directory-role-assign", args=[w.newcomer.pk]),
         DIRECTORY_WRITE,
         data=lambda w: {"role": DirectoryRole.objects.get(key="security-reader").pk}),
    Case("directory-role-unassign", "POST",
         lambda w: reverse("directory-role-unassign",
                           args=[DirectoryRoleAssignment.objects.get(user=w.inherited).pk]), DIRECTORY_WRITE),
    Case("directory-roles", "GET", lambda w: reverse("directory-roles"), DIRECTORY_ONLY),
    Case("audit-list", "GET", lambda w: reverse("audit-list"), expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("audit-export", "GET", lambda w: reverse("audit-export") + "?format=csv",
         expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("job-list", "GET", lambda w: reverse("job-list"), expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("job-run-now", "POST", lambda w: reverse("job-run-now", args=["verify_audit_chain"]),
         expect(LOGIN, 403, 302, 302, 302, 302)),
    Case("api-workspace-list", "GET", lambda w: "/api/v1/workspaces/", API_ALL),
    Case("api-workspace-detail", "GET", lambda w: "/api/v1/workspaces/alpha/", expect(403, 200, 200, 200, 200, 404)),
    Case("api-workspace-members", "GET", lambda w: "/api/v1/workspaces/alpha/members/",
         expect(403, 200, 200, 200, 200, 404)),
    Case("api-workspace-effective-owners", "GET", lambda w: "/api/v1/workspaces/alpha/effective-owners/",
         expect(403, 200, 200, 200, 200, 404)),
    Case("api-audit-event-list", "GET", lambda w: "/api/v1/audit-events/", expect(403, 403, 200, 200, 200, 200)),
    Case("api-audit-event-detail", "GET",
         lambda w: f"/api/v1/audit-events/{AuditEvent.objects.filter(workspace=w.alpha).latest('id').pk}/",
         expect(403, 403, 200, 200, 200, 404)),
    Case("robots", "GET", lambda w: "/robots.txt", expect(200, 200, 200, 200, 200, 200)),
    Case("admin:index", "GET", lambda w: "/admin/", expect(302, 302, 302, 302, 302, 302),
         label="admin (staff only; nobody here is staff)"),
    Case("api-root", "GET", lambda w: "/api/v1/", API_ALL),
    Case("api-schema", "GET", lambda w: reverse("api-schema"), API_ALL),
    Case("api-docs", "GET", lambda w: reverse("api-docs"), API_ALL),
]

#: URL namespaces whose every view is guarded by one gate tested above (the admin's staff check).
EXEMPT_NAMESPACES = {"admin"}
