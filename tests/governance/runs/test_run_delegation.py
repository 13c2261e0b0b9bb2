"""R13 for runs: a run of a user-scoped agent started by a contributor is delegated — its token speaks for the
contributor, its scopes never exceed the contributor's rights, and what it reads through the API is never more than
the contributor could read. Property-tested over random rights, through the real execution path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from agents import policy as agent_policy
from agents import registry
from agents.models import Agent, Blueprint
from governance.runs import builtin as builtin_agents
from governance.runs import services as runs
from governance.signin import tokens
from governance.signin.models import AccessToken, SignIn
from portal import directory, workspaces
from portal.models import DirectoryRole, Permission
from tests.factories import UserFactory, agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

HYGIENE = {"User.Read.All", "Application.Read.All", "AuditLog.Read.All", "RoleManagement.Read.Directory"}
CANDIDATES = sorted(HYGIENE | {"Policy.Read.All", "Directory.Read.All"})


@pytest.fixture
def delegation(world):
    builtin_agents.install()
    hygiene = Blueprint.objects.filter(name="AgentHygieneAgent").latest("version")
    assert set(hygiene.required_permissions.values_list("name", flat=True)) == HYGIENE
    plain = make_blueprint("Plain", permissions=("User.Read.All",))
    # What the contributor may see in alpha: workspace-scoped agents and their own user-scoped ones …
    registry.agent_create(actor=world.owner, workspace=world.alpha, spec=agent_spec(
        plain, "shared-agent", sponsors=[world.owner], owners=[world.owner_b]))
    # … and what they may not: another contributor's user-scoped agent in alpha, and beta's agents.
    rival = UserFactory(username="rival")
    workspaces.membership_add(actor=world.owner, workspace=world.alpha, user=rival, role="contributor")
    hidden = registry.agent_create(actor=rival, workspace=world.alpha, spec=agent_spec(
        plain, "rivals-agent", scope="user", sponsors=[rival], owners=[rival])).agent
    registry.agent_create(actor=world.other, workspace=world.beta, spec=agent_spec(
        plain, "beta-agent", sponsors=[world.other], owners=[world.other_b]))
    mine = registry.agent_create(actor=world.contributor, workspace=world.alpha, spec=agent_spec(
        hygiene, "my-hygiene", scope="user", sponsors=[world.contributor], owners=[world.contributor])).agent
    role = DirectoryRole.objects.create(key="delegation-test", name="Delegation test")
    directory.role_assign(actor=None, user=world.contributor, role=role)
    return world, mine, hidden, role


@hyp_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(rights=st.sets(st.sampled_from(CANDIDATES)))
def test_r13_a_delegated_run_never_reads_what_the_contributor_cannot(delegation, rights):
    world, mine, hidden, role = delegation
    role.permissions.set(Permission.objects.filter(name__in=rights, kind="delegated"))
    held = tokens.user_rights(world.contributor)
    session = runs.session_open(actor=world.contributor, agent=mine)
    run = runs.run_start(actor=world.contributor, session=session)
    run = runs.run_execute(run.pk)

    assert run.delegated_for == world.contributor
    assert set(run.scopes) == HYGIENE & held  # never a right the contributor lacks
    token = AccessToken.objects.get(run=run)
    assert token.subject == world.contributor and token.actor_kind == "on_behalf_of"
    assert set(token.scopes) <= held
    assert SignIn.objects.filter(token=token, subject=world.contributor, grant_type="run").exists()

    visible = set(agent_policy.agents_visible_to(world.contributor).values_list("pk", flat=True))
    if not run.scopes or "User.Read.All" not in run.scopes:
        # the read itself is refused by the API: nothing was read, and the run says why
        assert run.status == "failed" and "403" in run.error, run.error
        assert run.findings == []
        return
    assert run.status == "succeeded", run.error
    seen = {f["agent_id"] for f in run.findings}
    assert seen <= visible and hidden.pk not in seen
    kinds = {f["kind"] for f in run.findings}
    if "AuditLog.Read.All" not in run.scopes:  # no sign-in data: no finding derived from it
        assert not kinds & {"agent_unused", "permission_unused"}
    if "Application.Read.All" not in run.scopes:  # no credential data
        assert not kinds & {"credential_expired", "credential_expiring"}


def test_r13_the_same_agent_run_by_its_schedule_reads_as_itself(delegation):
    """Without a person behind it, a scheduled run's token is the agent's own (app-only), with the agent's scopes."""
    world, mine, hidden, _role = delegation
    run = runs.run_execute(runs.scheduled_run_start(Agent.objects.get(pk=mine.pk)).pk)
    token = AccessToken.objects.get(run=run)
    assert token.subject is None and token.actor_kind == "agent" and set(run.scopes) == HYGIENE
    assert run.status == "succeeded", run.error
    # the agent's own identity reads the whole workspace — which is exactly what a delegated run must not
    assert hidden.pk in {f["agent_id"] for f in run.findings}
