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
    Case("member-role", "GET", lambda w: _contrib_membership_url("member-role")(w) + "?role=owner",
         expect(LOGIN, 403, 200, 200, 200, 404), label="member-role confirmation page"),
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


def _skill(w):
    from agents.models import Publisher, Skill, Skillset

    publisher = Publisher.objects.get_or_create(name="Microsoft", defaults={"kind": "microsoft"})[0]
    skillset = Skillset.objects.get_or_create(name="Entra", defaults={"publisher": publisher, "product": "entra"})[0]
    return Skill.objects.get_or_create(skillset=skillset, name="GetEntraUserDetailsV1")[0]


def _unknown_skill_ref(w):
    from agents.models import BlueprintSkill

    return BlueprintSkill.objects.get_or_create(blueprint=w.blueprint, name="GetEntraData")[0]


def _bulk_job(w):
    from agents.models import BulkJob

    return BulkJob.objects.create(workspace=w.alpha, requested_by=w.owner, filename="agents.csv", file_format="csv",
                                  payload="", status="succeeded", total=1, done=1)


def _agent_url(name, *extra):
    return lambda w: reverse(name, args=[w.agent.pk, *[e(w) if callable(e) else e for e in extra]])


def _credential_id(w):
    from agents.models import Credential

    return Credential.objects.filter(identity__agent=w.agent).first().pk


AGENT_VIEW = expect(LOGIN, 200, 200, 200, 200, 404)
AGENT_MANAGE = expect(LOGIN, 403, 302, 302, 302, 404)
CURATE = expect(LOGIN, 403, 302, 302, 302, 302)
API_AGENT = expect(403, 403, 200, 200, 200, 404)

CASES += [
    Case("agent-list", "GET", lambda w: reverse("agent-list"), EVERYONE_OK),
    Case("agent-detail", "GET", _agent_url("agent-detail"), AGENT_VIEW),
    Case("agent-secret-once", "GET", _agent_url("agent-secret-once"), expect(LOGIN, 302, 302, 302, 302, 404),
         label="agent-secret-once with no secret waiting (back to the agent)"),
    Case("agent-setup", "GET", lambda w: reverse("agent-setup"), EVERYONE_OK),
    Case("agent-setup-blueprint", "GET", lambda w: reverse("agent-setup-blueprint", args=[w.blueprint.pk]),
         EVERYONE_OK),
    Case("agent-setup-blueprint", "POST", lambda w: reverse("agent-setup-blueprint", args=[w.blueprint.pk]),
         EVERYONE_OK, label="agent setup (review, or the form with the refusal)",
         data=lambda w: {"name": "new-agent", "identity_type": "agent_identity", "scope": "workspace",
                         "sponsors": "owner", "owners": "owner"}),
    Case("agent-disable", "POST", _agent_url("agent-disable"), AGENT_MANAGE),
    Case("agent-enable", "POST", _agent_url("agent-enable"), AGENT_MANAGE),
    Case("agent-retire", "GET", _agent_url("agent-retire"), expect(LOGIN, 403, 200, 200, 200, 404)),
    Case("agent-retire", "POST", _agent_url("agent-retire"), AGENT_MANAGE),
    Case("agent-credential-rotate", "POST", _agent_url("agent-credential-rotate"),
         expect(LOGIN, 403, 302, 302, 302, 404)),  # to the page that shows the new secret once
    Case("agent-credential-revoke", "POST", _agent_url("agent-credential-revoke", _credential_id), AGENT_MANAGE),
    Case("agent-person", "POST", _agent_url("agent-person"), AGENT_MANAGE,
         data=lambda w: {"user": "newcomer", "role": "sponsor_agent"}),
    Case("agent-attribute", "POST", _agent_url("agent-attribute"), AGENT_MANAGE,
         data=lambda w: {"key": "tier", "value": "1"}),
    Case("blueprint-list", "GET", lambda w: reverse("blueprint-list"), EVERYONE_OK),
    Case("blueprint-list", "POST", lambda w: reverse("blueprint-list"), expect(LOGIN, 200, 200, 200, 200, 200),
         label="blueprint import (no file: the form's error)"),
    Case("blueprint-detail", "GET", lambda w: reverse("blueprint-detail", args=[w.blueprint.pk]), EVERYONE_OK),
    Case("blueprint-export", "GET", lambda w: reverse("blueprint-export", args=[w.blueprint.pk]), EVERYONE_OK),
    Case("blueprint-resolve-skill", "POST",
         lambda w: reverse("blueprint-resolve-skill", args=[w.blueprint.pk, _unknown_skill_ref(w).pk]), CURATE),
    Case("skill-list", "GET", lambda w: reverse("skill-list"), EVERYONE_OK),
    Case("skill-edit", "GET", lambda w: reverse("skill-edit", args=[_skill(w).pk]),
         expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("bulk-upload", "GET", lambda w: reverse("bulk-upload"), EVERYONE_OK),
    Case("bulk-job", "GET", lambda w: reverse("bulk-job", args=[_bulk_job(w).pk]),
         expect(LOGIN, 404, 200, 200, 200, 404)),
    Case("bulk-job-secrets", "POST", lambda w: reverse("bulk-job-secrets", args=[_bulk_job(w).pk]),
         expect(LOGIN, 404, 403, 403, 403, 404)),
    Case("api-blueprint-list", "GET", lambda w: "/api/v1/blueprints/", API_ALL),
    Case("api-blueprint-detail", "GET", lambda w: f"/api/v1/blueprints/{w.blueprint.pk}/", API_ALL),
    Case("api-agent-list", "GET", lambda w: "/api/v1/agents/", API_ALL),
    Case("api-agent-list", "POST", lambda w: "/api/v1/agents/", expect(403, 400, 201, 201, 201, 404),
         label="api agent create at workspace scope",
         data=lambda w: {"workspace": "alpha", "blueprint": w.blueprint.pk, "name": "api-agent",
                         "identity_type": "agent_identity", "scope": "workspace", "sponsors": "owner",
                         "owners": "owner"}),
    Case("api-agent-detail", "GET", lambda w: f"/api/v1/agents/{w.agent.pk}/", expect(403, 200, 200, 200, 200, 404)),
    Case("api-agent-detail", "PATCH", lambda w: f"/api/v1/agents/{w.agent.pk}/", expect(403, 405, 405, 405, 405, 405),
         label="api agent PATCH (no update path: permissions and owners are not editable)",
         data=lambda w: {"name": "renamed"}),
    Case("api-agent-disable", "POST", lambda w: f"/api/v1/agents/{w.agent.pk}/disable/", API_AGENT),
    Case("api-agent-enable", "POST", lambda w: f"/api/v1/agents/{w.agent.pk}/enable/",
         expect(403, 403, 400, 400, 400, 404)),
    Case("api-agent-retire", "POST", lambda w: f"/api/v1/agents/{w.agent.pk}/retire/", API_AGENT),
]

#: URL namespaces whose every view is guarded by one gate tested above (the admin's staff check).
EXEMPT_NAMESPACES = {"admin"}

CASES += [
    Case("notification-list", "GET", lambda w: reverse("notification-list"), EVERYONE_OK),
    Case("notification-read", "POST", lambda w: reverse("notification-read"), expect(LOGIN, 302, 302, 302, 302, 302),
         label="notification-read (marks the persona's own notifications read)"),
]


# --- governance: partner approvals (R14–R16) --------------------------------------------------------------------

APPROVAL_SEEN = expect(LOGIN, 200, 200, 200, 200, 404)  # the requester, the agent's managers, GAs
API_APPROVAL = expect(403, 200, 200, 200, 200, 404)


def _approval_url(name):
    return lambda w: reverse(name, args=[w.approval.pk])


CASES += [
    Case("approval-list", "GET", lambda w: reverse("approval-list"), EVERYONE_OK),
    Case("approval-detail", "GET", _approval_url("approval-detail"), APPROVAL_SEEN),
    Case("approval-approve", "POST", _approval_url("approval-approve"), expect(LOGIN, 403, 403, 403, 302, 404)),
    Case("approval-deny", "POST", _approval_url("approval-deny"), expect(LOGIN, 403, 403, 403, 302, 404),
         data=lambda w: {"reason": "Reads too much"}),
    Case("approval-withdraw", "POST", _approval_url("approval-withdraw"), expect(LOGIN, 302, 302, 302, 302, 404)),
    Case("approval-create", "GET", lambda w: reverse("approval-create", args=[w.partner_agent.pk]),
         expect(LOGIN, 200, 200, 200, 200, 404)),
    Case("approval-create", "POST", lambda w: reverse("approval-create", args=[w.partner_agent.pk]),
         expect(LOGIN, 200, 200, 200, 200, 404), label="approval ask-again (refused: the agent is not a draft)",
         data=lambda w: {"justification": "again"}),
    Case("api-approval-request-list", "GET", lambda w: "/api/v1/approval-requests/", API_ALL),
    Case("api-approval-request-list", "POST", lambda w: "/api/v1/approval-requests/",
         expect(403, 400, 400, 400, 400, 404), label="api approval create (refused: not a draft)",
         data=lambda w: {"agent": w.partner_agent.pk, "justification": "again"}),
    Case("api-approval-request-detail", "GET", lambda w: f"/api/v1/approval-requests/{w.approval.pk}/",
         API_APPROVAL),
    Case("api-approval-request-approve", "POST", lambda w: f"/api/v1/approval-requests/{w.approval.pk}/approve/",
         expect(403, 403, 403, 403, 200, 404)),
    Case("api-approval-request-deny", "POST", lambda w: f"/api/v1/approval-requests/{w.approval.pk}/deny/",
         expect(403, 403, 403, 403, 200, 404), data=lambda w: {"reason": "no"}),
    Case("api-approval-request-withdraw", "POST",
         lambda w: f"/api/v1/approval-requests/{w.approval.pk}/withdraw/", API_APPROVAL),
]

CASES += [
    Case("agent-activate", "POST", lambda w: reverse("agent-activate", args=[w.partner_agent.pk]),
         expect(LOGIN, 302, 302, 302, 302, 404), label="agent complete setup (refused until approved: a message)"),
]


# --- governance: access packages and assignments (R17, R18) -------------------------------------------------------

IN_ALPHA = expect(LOGIN, 200, 200, 200, 200, 404)
DECIDE = expect(LOGIN, 403, 302, 302, 302, 404)
API_IN_ALPHA = expect(403, 200, 200, 200, 200, 404)
API_DECIDE = expect(403, 403, 200, 200, 200, 404)


def _assignment_url(name):
    return lambda w: reverse(name, args=[w.assignment.pk])


CASES += [
    Case("package-list", "GET", lambda w: reverse("package-list"), EVERYONE_OK),
    Case("package-create", "GET", lambda w: reverse("package-create"), expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("package-create", "POST", lambda w: reverse("package-create"), expect(LOGIN, 403, 200, 200, 200, 200),
         label="package create (incomplete form: its errors)", data=lambda w: {"name": "x"}),
    Case("assignments-expiring", "GET", lambda w: reverse("assignments-expiring"), EVERYONE_OK),
    Case("package-detail", "GET", lambda w: reverse("package-detail", args=[w.package.pk]), IN_ALPHA),
    Case("package-detail", "POST", lambda w: reverse("package-detail", args=[w.package.pk]), IN_ALPHA,
         label="package request (refused: not allowed, or already requested)",
         data=lambda w: {"agent_name": "matrix-agent", "justification": "again"}),
    Case("package-edit", "GET", lambda w: reverse("package-edit", args=[w.package.pk]),
         expect(LOGIN, 403, 200, 200, 200, 404)),
    Case("assignment-detail", "GET", _assignment_url("assignment-detail"), IN_ALPHA),
    Case("assignment-approve", "POST", _assignment_url("assignment-approve"), DECIDE),
    Case("assignment-deny", "POST", _assignment_url("assignment-deny"), DECIDE, data=lambda w: {"reason": "no"}),
    Case("assignment-extend", "POST", _assignment_url("assignment-extend"), DECIDE, data=lambda w: {"hours": 1},
         label="assignment extend (refused for a pending one: a message)"),
    Case("assignment-revoke", "POST", _assignment_url("assignment-revoke"), DECIDE),
    Case("api-access-package-list", "GET", lambda w: "/api/v1/access-packages/", API_ALL),
    Case("api-access-package-detail", "GET", lambda w: f"/api/v1/access-packages/{w.package.pk}/", API_IN_ALPHA),
    Case("api-assignment-list", "GET", lambda w: "/api/v1/assignments/", API_ALL),
    Case("api-assignment-list", "POST", lambda w: "/api/v1/assignments/", expect(403, 403, 400, 400, 400, 404),
         label="api assignment request (refused: not allowed, or already requested)",
         data=lambda w: {"package": w.package.pk, "agent": w.agent.pk, "justification": "again"}),
    Case("api-assignment-detail", "GET", lambda w: f"/api/v1/assignments/{w.assignment.pk}/", API_IN_ALPHA),
    Case("api-assignment-approve", "POST", lambda w: f"/api/v1/assignments/{w.assignment.pk}/approve/", API_DECIDE),
    Case("api-assignment-deny", "POST", lambda w: f"/api/v1/assignments/{w.assignment.pk}/deny/", API_DECIDE,
         data=lambda w: {"reason": "no"}),
    Case("api-assignment-extend", "POST", lambda w: f"/api/v1/assignments/{w.assignment.pk}/extend/",
         expect(403, 403, 400, 400, 400, 404), data=lambda w: {"hours": 1}),
    Case("api-assignment-revoke", "POST", lambda w: f"/api/v1/assignments/{w.assignment.pk}/revoke/", API_DECIDE),
]


# --- governance: access reviews (R19) ------------------------------------------------------------------------------

REVIEW_OWNERS = expect(LOGIN, 403, 200, 200, 200, 404)


def _review_url(name):
    return lambda w: reverse(name, args=[w.review.pk])


CASES += [
    Case("review-list", "GET", lambda w: reverse("review-list"), EVERYONE_OK),
    Case("review-create", "GET", lambda w: reverse("review-create"), expect(LOGIN, 403, 200, 200, 200, 200)),
    Case("review-create", "POST", lambda w: reverse("review-create"), expect(LOGIN, 403, 200, 200, 200, 200),
         label="review create (incomplete form: its errors)", data=lambda w: {"name": "x"}),
    Case("review-detail", "GET", _review_url("review-detail"), IN_ALPHA),
    Case("review-mine", "GET", _review_url("review-mine"), IN_ALPHA),
    Case("review-accept", "POST", _review_url("review-accept"), expect(LOGIN, 302, 302, 302, 302, 404),
         label="review accept recommendations (none to accept for a non-reviewer: a message)"),
    Case("review-decide", "POST", lambda w: reverse("review-decide", args=[w.review_item.pk]),
         expect(LOGIN, 403, 302, 403, 403, 404), data=lambda w: {"decision": "approve"}),
    Case("review-close", "POST", _review_url("review-close"), DECIDE),
    Case("review-results", "GET", _review_url("review-results"), REVIEW_OWNERS),
    Case("review-results-csv", "GET", _review_url("review-results-csv"), REVIEW_OWNERS),
    Case("api-review-list", "GET", lambda w: "/api/v1/reviews/", API_ALL),
    Case("api-review-detail", "GET", lambda w: f"/api/v1/reviews/{w.review.pk}/", API_IN_ALPHA),
    Case("api-review-decisions", "GET", lambda w: f"/api/v1/reviews/{w.review.pk}/decisions/", API_IN_ALPHA),
    Case("api-review-decisions", "POST", lambda w: f"/api/v1/reviews/{w.review.pk}/decisions/",
         expect(403, 403, 200, 403, 403, 404), label="api review decision (only the item's reviewer)",
         data=lambda w: {"item": w.review_item.pk, "decision": "approve"}),
]


# --- conditional access (R20) -------------------------------------------------------------------------------------
def _policy(w):
    from governance.conditional_access.models import ConditionalAccessPolicy

    return ConditionalAccessPolicy.objects.get_or_create(name="Matrix policy", defaults={"all_agents": True})[0]


POLICY_READ = expect(LOGIN, 403, 200, 200, 200, 200)
POLICY_MANAGE = expect(LOGIN, 403, 403, 200, 200, 403)

CASES += [
    Case("policy-list", "GET", lambda w: reverse("policy-list"), POLICY_READ),
    Case("policy-what-if", "GET", lambda w: reverse("policy-what-if") + "?agent=matrix-agent&ip=10.0.0.1",
         POLICY_READ),
    Case("policy-create", "GET", lambda w: reverse("policy-create"), POLICY_MANAGE),
    Case("policy-create", "POST", lambda w: reverse("policy-create"), expect(LOGIN, 403, 403, 302, 302, 403),
         label="policy create", data=lambda w: {"name": "Block partners", "state": "report_only", "grant": "block",
                                                 "publisher_kinds": "partner"}),
    Case("policy-edit", "GET", lambda w: reverse("policy-edit", args=[_policy(w).pk]), POLICY_MANAGE),
]


# --- tokens, sign-ins and risk: each capability keeps its cases in tests/matrix_cases/ ----------------

from tests.matrix_cases import oauth as _oauth_cases  # noqa: E402
from tests.matrix_cases import risk as _risk_cases  # noqa: E402
from tests.matrix_cases import runs as _run_cases  # noqa: E402
from tests.matrix_cases import signins as _signin_cases  # noqa: E402

CASES += _oauth_cases.CASES + _risk_cases.CASES + _signin_cases.CASES

# --- sessions and runs ------------------------------------------------------------------------------------

CASES += _run_cases.CASES

# --- attribute sets and protected attributes ---------------------------------------------------------------------

from tests.matrix_cases import attributes as _attribute_cases  # noqa: E402

CASES += _attribute_cases.CASES

# --- discovery, the API's protected-resource metadata, agents as resources -------------------------------------

from tests.matrix_cases import resources as _resource_cases  # noqa: E402

CASES += _resource_cases.CASES

# --- OAuth client registration and the approval queue ------------------------------------------------------------

from tests.matrix_cases import clients as _client_cases  # noqa: E402

CASES += _client_cases.CASES

# --- people's OAuth pages: authorization endpoint, connected apps ---------------------------------------------------

from tests.matrix_cases import consent as _consent_cases  # noqa: E402

CASES += _consent_cases.CASES

# --- signing keys: the JWKS and the signing-keys page -----------------------------------------------------------

from tests.matrix_cases import signing as _signing_cases  # noqa: E402

CASES += _signing_cases.CASES

# --- agents without secrets: keys and federated credentials --------------------------------------------------------

from tests.matrix_cases import credentials as _credential_cases  # noqa: E402

CASES += _credential_cases.CASES


# --- credential types in governance: the workspace's "no new secrets" policy, filters -------------------------------

from tests.matrix_cases import credential_governance as _credential_governance_cases  # noqa: E402

CASES += _credential_governance_cases.CASES

# --- the audit log: the export with inclusion proofs and the log's public key ------------------------------------

from tests.matrix_cases import audit_log as _audit_log_cases  # noqa: E402

CASES += _audit_log_cases.CASES

# --- the agents list's bulk actions, CSV export and bulk-upload template -------------------------------------------

from tests.matrix_cases import agent_bulk as _agent_bulk_cases  # noqa: E402

CASES += _agent_bulk_cases.CASES

# --- blast radius: what a disruptive change stops, on its confirmation page and from the API -----------------------

from tests.matrix_cases import blast_radius as _blast_radius_cases  # noqa: E402

CASES += _blast_radius_cases.CASES

# --- accepted sponsorship: my sponsorships, answering and handing over ---------------------------------------------

from tests.matrix_cases import sponsorship as _sponsorship_cases  # noqa: E402

CASES += _sponsorship_cases.CASES

# --- evidence of use per permission in access reviews --------------------------------------------------------------

from tests.matrix_cases import review_evidence as _review_evidence_cases  # noqa: E402

CASES += _review_evidence_cases.CASES

# --- four-eyes: changes waiting for a second administrator, and their settings -------------------------------------

from tests.matrix_cases import four_eyes as _four_eyes_cases  # noqa: E402

CASES += _four_eyes_cases.CASES

# --- policy replay: what a policy would have blocked, and turning it on through its replay -------------------------

from tests.matrix_cases import policy_replay as _policy_replay_cases  # noqa: E402

CASES += _policy_replay_cases.CASES

# --- removing an access package, after its blast radius ------------------------------------------------------------

from tests.matrix_cases import package_removal as _package_removal_cases  # noqa: E402

CASES += _package_removal_cases.CASES
