"""``/api/v1/agent-facts/`` (R13, R22): what the built-in agents read. Sections follow the caller's scopes,
a person sees only the agents visible to them, and the queries do not grow with the number of agents."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry, sponsorship
from agents.models import Agent, Credential, Sponsorship
from governance.access import services as access_packages
from governance.conditional_access import services as conditional_access
from governance.runs.builtin import facts as agent_facts
from governance.signin import tokens
from governance.signin.models import SignIn
from portal.models import Permission
from tests.factories import accept_sponsorships, agent_spec, grant_role, make_blueprint

pytestmark = pytest.mark.django_db

URL = "/api/v1/agent-facts/"
EVERY_READ = ("User.Read.All", "Application.Read.All", "RoleManagement.Read.Directory", "AuditLog.Read.All",
              "Policy.Read.All")


def _create(w, name, permissions=("User.Read.All",), *, workspace=None, actor=None, scope="workspace", **spec):
    blueprint = make_blueprint(f"{name}-bp".title().replace("-", ""), permissions=permissions)
    actor = actor or (w.owner if workspace is None else w.other)
    return registry.agent_create(actor=actor, workspace=workspace or w.alpha, spec=agent_spec(
        blueprint, name, sponsors=spec.pop("sponsors", [actor]), owners=[actor], scope=scope, **spec))


def _bearer(client, created) -> str:
    response = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": created.client_id,
                                             "client_secret": created.client_secret})
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def _get(client, token=None, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get(URL, params, **headers)


def _names(body) -> list[str]:
    return [item["name"] for item in body["results"]]


def test_agent_facts_sections_follow_the_token_scopes(client, world):
    reader = _create(world, "facts-reader", EVERY_READ)
    no_audit = _create(world, "no-audit", ("User.Read.All", "Application.Read.All", "Policy.Read.All"))
    only_users = _create(world, "only-users", ("User.Read.All",))

    body = _get(client, _bearer(client, reader)).json()
    assert body["sections"] == ["credentials", "permissions", "policies", "run_as_admin", "usage"]
    assert set(body["results"][0]) >= {"credentials", "permissions", "policies", "run_as_admin", "usage"}

    body = _get(client, _bearer(client, no_audit)).json()
    assert body["sections"] == ["credentials", "policies"]  # no AuditLog.Read.All: no usage
    assert all("usage" not in item and "permissions" not in item for item in body["results"])

    body = _get(client, _bearer(client, only_users)).json()
    assert body["sections"] == [] and body["count"] == 3
    assert set(body["results"][0]) == {"id", "name", "workspace", "kind", "publisher_kind", "identity_type",
                                       "status", "risk_level", "created_at", "orphaned_at", "sponsors"}


def test_agent_facts_need_a_base_scope_and_refuse_writes(client, world):
    policy_only = _create(world, "policy-only", ("Policy.Read.All",))
    token = _bearer(client, policy_only)
    response = _get(client, token)
    assert response.status_code == 403 and "Portal.Agents.Read.All" in response.json()["detail"]
    assert client.post(URL, {}, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403
    assert client.get(URL).status_code == 401  # anonymous: challenged for a bearer token


def test_agent_facts_of_one_agent_are_exact(client, world):
    now = timezone.now()
    reader = _create(world, "facts-reader", EVERY_READ)
    token = _bearer(client, reader)  # before "Others" blocks it: policies apply at issuance
    target = _create(world, "target", ("User.Read.All", "Policy.Read.All"),
                     sponsors=[world.owner, world.owner_b], attributes={"tier": "0"}).agent
    accept_sponsorships(target)  # owner_b accepts: both count (R30)
    credential = Credential.objects.get(identity__agent=target)
    package = access_packages.package_save(
        actor=world.owner, workspace=world.alpha, name="Responder", policy={"approver_kind": "workspace_owners"},
        permissions=Permission.objects.filter(name="SecurityIncident.ReadWrite.All", kind="application"))
    assignment = access_packages.assignment_decide(actor=world.owner, approve=True, assignment=access_packages
                                                   .assignment_request(actor=world.owner_b, package=package,
                                                                       agent=target, justification="incidents"))
    SignIn.objects.create(at=now - timedelta(days=40), agent=target, client_id="x", actor_kind="agent",
                          outcome="success", granted_scopes=["Policy.Read.All"])
    recent = SignIn.objects.create(at=now - timedelta(days=1), agent=target, client_id="x", actor_kind="agent",
                                   outcome="success", granted_scopes=["User.Read.All"])
    SignIn.objects.create(agent=target, client_id="x", actor_kind="agent", outcome="failure", granted_scopes=[])
    on = conditional_access.policy_save(actor=None, data={"name": "Tier 0", "state": "on", "grant": "block",
                                                          "attribute_rules": [{"key": "tier", "value": "0"}],
                                                          "min_risk_level": "medium"})
    excluding = conditional_access.policy_save(actor=None, data={"name": "All agents", "state": "report_only",
                                                                 "all_agents": True}, excluded_agents=[target])
    conditional_access.policy_save(actor=None, data={"name": "Others", "state": "on"}, agents=[reader.agent])

    body = _get(client, token).json()
    item = next(i for i in body["results"] if i["name"] == "target")
    assert item == {
        "id": target.pk, "name": "target", "workspace": "alpha", "kind": "assistive", "publisher_kind": "microsoft",
        "identity_type": "agent_identity", "status": "active", "risk_level": "none",
        "created_at": agent_facts.iso(target.created_at), "orphaned_at": None, "sponsors": 2,
        "credentials": [{"prefix": credential.prefix, "expires_at": agent_facts.iso(credential.expires_at),
                         "replaced": False}],
        "key_credentials": [], "federated_credentials": [],
        "permissions": [
            {"name": "Policy.Read.All", "source": "blueprint", "assignment_id": None, "ends_at": None,
             "write": False},
            {"name": "SecurityIncident.ReadWrite.All", "source": "package", "assignment_id": assignment.pk,
             "ends_at": agent_facts.iso(assignment.expires_at), "write": True},
            {"name": "User.Read.All", "source": "blueprint", "assignment_id": None, "ends_at": None, "write": False},
        ],
        "run_as_admin": False,
        "usage": {"last_used": agent_facts.iso(recent.at), "scopes_30d": ["User.Read.All"],
                  "permissions_used_30d": []},  # granted at sign-in, never presented: not a permission's use
        "policies": [
            {"id": excluding.pk, "name": "All agents", "state": "report_only", "grant": "block", "min_risk_level": "",
             "excluded": True},
            {"id": on.pk, "name": "Tier 0", "state": "on", "grant": "block", "min_risk_level": "medium",
             "excluded": False},
        ],
    }
    assert agent_facts.parse_iso(item["created_at"]) == target.created_at


def test_r30_agent_facts_count_accepted_sponsors_only(client, world):
    """``sponsors`` counts accepted sponsors (docs/sponsorship.md): named and not answered, declined or lapsed do
    not count, through the API the hygiene agent reads."""
    token = _bearer(client, _create(world, "facts-reader", EVERY_READ))
    target = _create(world, "target", sponsors=[world.owner, world.owner_b, world.contributor]).agent

    def sponsors() -> int:
        return next(i for i in _get(client, token).json()["results"] if i["name"] == "target")["sponsors"]

    def row(user) -> Sponsorship:
        return Sponsorship.objects.get(agent=target, user=user)

    assert sponsors() == 1  # w.owner named themself; owner_b and the contributor are asked
    sponsorship.sponsorship_accept(actor=world.owner_b, sponsorship=row(world.owner_b))
    assert sponsors() == 2
    sponsorship.sponsorship_decline(actor=world.contributor, sponsorship=row(world.contributor))
    assert sponsors() == 2
    Sponsorship.objects.filter(pk=row(world.owner_b).pk).update(due_at=timezone.now() - timedelta(seconds=1))
    assert sponsors() == 1  # owner_b's confirmation is overdue: lapsed, even before the job marks it
    world.owner.is_active = False
    world.owner.save(update_fields=["is_active"])
    assert sponsors() == 0


def test_agent_facts_flag_a_user_account_agent_running_as_an_administrator(client, world):
    reader = _create(world, "facts-reader", EVERY_READ)
    _create(world, "as-admin", identity_type="user_account", run_as_user=world.inherited)
    _create(world, "as-plain", identity_type="user_account", run_as_user=world.contributor)
    body = _get(client, _bearer(client, reader)).json()
    assert {i["name"]: i["run_as_admin"] for i in body["results"]} == \
        {"as-admin": True, "as-plain": False, "facts-reader": False}


def test_r13_a_persons_token_sees_only_the_agents_visible_to_them(client, world):
    grant_role(world.contributor, "security-reader")  # data rights to delegate: every read scope
    _create(world, "shared")  # workspace scope in alpha: visible to the contributor
    _create(world, "owners-own", scope="user")  # user scope: its creator's (and the owners')
    _create(world, "beta-agent", workspace=world.beta)
    _token, value = tokens.personal_token_issue(actor=world.contributor)
    body = _get(client, value).json()
    assert _names(body) == ["shared"]
    assert body["sections"] == ["credentials", "permissions", "policies", "run_as_admin", "usage"]
    assert _names(_get(client, value, workspace="beta").json()) == []


def test_a_signed_in_person_gets_the_sections_their_roles_allow(client, world):
    _create(world, "shared")
    _create(world, "beta-agent", workspace=world.beta)
    client.force_login(world.contributor)
    body = _get(client).json()
    assert _names(body) == ["shared"]
    assert body["sections"] == ["credentials", "permissions", "run_as_admin", "usage"]  # policies: readers only
    client.force_login(world.inherited)
    body = _get(client).json()
    assert _names(body) == ["beta-agent", "shared"]
    assert body["sections"] == ["credentials", "permissions", "policies", "run_as_admin", "usage"]


def test_r13_an_agents_own_token_reads_the_agent_facts_of_its_own_workspace_only(client, world):
    reader = _create(world, "facts-reader", EVERY_READ)
    _create(world, "beta-agent", workspace=world.beta)
    disabled = _create(world, "disabled").agent
    registry.agent_disable(actor=world.owner, agent=disabled)
    token = _bearer(client, reader)
    body = _get(client, token).json()
    assert (body["count"], body["next"], body["previous"]) == (1, None, None)
    assert _names(body) == ["facts-reader"]  # its workspace's active agents only
    assert _names(_get(client, token, workspace="alpha").json()) == ["facts-reader"]
    assert _get(client, token, workspace="beta").json()["results"] == []


def _grant_organisation_read(world, created) -> None:
    """``Portal.Read.All`` by its only road: a package whose approvers are Global Administrators (R13)."""
    package = access_packages.package_save(
        actor=world.owner, workspace=world.alpha, name="Whole organisation",
        policy={"approver_kind": "global_administrators"},
        permissions=Permission.objects.filter(name="Portal.Read.All", kind="application"))
    assignment = access_packages.assignment_request(actor=world.owner, package=package, agent=created.agent,
                                                    justification="checks every workspace")
    access_packages.assignment_decide(actor=world.ga, assignment=assignment, approve=True)


def test_r13_with_portal_read_all_an_agents_own_token_reads_every_workspace_and_filters_by_one(client, world):
    reader = _create(world, "facts-reader", EVERY_READ)
    _create(world, "beta-agent", workspace=world.beta)
    _grant_organisation_read(world, reader)
    token = _bearer(client, reader)
    body = _get(client, token).json()
    assert (body["count"], body["next"], body["previous"]) == (2, None, None)
    assert _names(body) == ["beta-agent", "facts-reader"]
    assert _names(_get(client, token, workspace="beta").json()) == ["beta-agent"]
    assert _get(client, token, workspace="nowhere").json()["results"] == []


def test_r13_an_agents_own_token_reads_only_its_workspace_on_every_portal_api_list(client, world):
    reader = _create(world, "api-reader", ("Portal.Agents.Read.All", "Portal.Audit.Read.All",
                                           "Portal.Governance.Read.All"))
    _create(world, "beta-agent", workspace=world.beta)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {_bearer(client, reader)}"}

    def listed(url, key):
        return {item[key] for item in client.get(url, **headers).json()["results"]}

    assert listed("/api/v1/workspaces/", "slug") == {"alpha"}
    assert listed("/api/v1/agents/", "name") == {"api-reader"}
    assert listed("/api/v1/audit-events/", "workspace") == {"alpha"}
    assert client.get(f"/api/v1/agents/{Agent.objects.get(name='beta-agent').pk}/", **headers).status_code == 404
    assert client.get("/api/v1/workspaces/beta/", **headers).status_code == 404


def test_r13_portal_read_all_is_granted_only_through_a_package_global_administrators_approve(world):
    from django.core.exceptions import ValidationError

    from agents import catalog

    organisation_read = Permission.objects.filter(name="Portal.Read.All", kind="application")
    for policy in ({"approver_kind": "workspace_owners"}, {"approver_kind": "none"},
                   {"approver_kind": "global_administrators", "second_approver_kind": "workspace_owners"}):
        with pytest.raises(ValidationError, match="Global Administrators"):
            access_packages.package_save(actor=world.owner, workspace=world.alpha, name="Everything",
                                         policy=policy, permissions=organisation_read)
    with pytest.raises(ValidationError, match="not a blueprint's permission"):
        catalog.application_permissions(["User.Read.All", "Portal.Read.All"])


def _fleet(world, n: int) -> None:
    for i in range(n):
        created = _create(world, f"fleet-{n}-{i}", ("User.Read.All", "Policy.Read.All"),
                          sponsors=[world.owner, world.owner_b], attributes={"tier": str(i % 2)})
        SignIn.objects.create(agent=created.agent, client_id="x", actor_kind="agent", outcome="success",
                              granted_scopes=["User.Read.All"])
        if i % 2:  # half the fleet with both sponsors accepted, half with owner_b still asked (R30)
            accept_sponsorships(created.agent)
    if n == 3:
        conditional_access.policy_save(actor=None, data={"name": "Tier 1", "state": "on", "all_agents": True},
                                       excluded_agents=[Agent.objects.filter(name__startswith="fleet-").first()])


def test_agent_facts_run_a_fixed_number_of_queries(world):
    def count(n):
        _fleet(world, n)
        with CaptureQueriesContext(connection) as queries:
            found = agent_facts.facts(Agent.objects.filter(name__startswith=f"fleet-{n}-"),
                                      sections=agent_facts.ALL_SECTIONS, now=timezone.now())
        assert len(found) == n
        return len(queries)

    assert count(3) == count(30)


def test_the_agent_facts_api_runs_a_fixed_number_of_queries(client, world):
    token = _bearer(client, _create(world, "facts-reader", EVERY_READ))
    _get(client, token, workspace="alpha")  # the token's first use is noted once (docs/design.md, "Usage")

    def count(n):
        _fleet(world, n)
        with CaptureQueriesContext(connection) as queries:
            body = _get(client, token, workspace="alpha").json()
        assert body["count"] == n + 1 + (3 if n == 30 else 0)
        return len(queries)

    assert count(3) == count(30)
