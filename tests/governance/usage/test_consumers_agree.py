"""One definition of "used" (docs/design.md, "Usage"): on one seeded set, the registry's pages, the hygiene agent's
findings, the agent-facts API, the access review's evidence and the risk job's "scope never granted before" all
give the same answer, with the same date and its zone, whether the sign-ins are in the rollup or still in the log's
tail."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.reviews.campaigns import review_create
from governance.reviews.opening import recommend
from governance.risk import services as risk
from governance.risk.models import RiskDetection
from governance.runs.builtin import hygiene
from governance.signin.models import AccessToken, SignIn
from governance.usage import rollup, selectors
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

EVERY_READ = ("User.Read.All", "Application.Read.All", "RoleManagement.Read.Directory", "AuditLog.Read.All",
              "Policy.Read.All")


def shown(moment) -> str:
    """How every consumer writes a moment: UTC, to the minute, with the zone."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _agent(w, name: str, created_days_ago: int) -> Agent:
    agent = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        w.blueprint, name, sponsors=[w.owner], owners=[w.owner_b])).agent
    Agent.objects.filter(pk=agent.pk).update(created_at=timezone.now() - timedelta(days=created_days_ago))
    return agent


def _signed_in(agent, at, outcome="success", scopes=("User.Read.All",)) -> None:
    SignIn.objects.create(agent=agent, at=at, client_id=agent.identity.client_id, outcome=outcome,
                          granted_scopes=list(scopes) if outcome == "success" else [],
                          requested_scopes=list(scopes))


@pytest.fixture
def seeded(registry_world):
    """busy: used two days ago (rolled up) and refused an hour ago (the tail; not a use); idle: used 70 days ago
    only; never: set up 90 days ago, never used. Half of the history is rolled up, the rest is the tail."""
    w = registry_world
    now = timezone.now()
    w.busy = w.agent
    Agent.objects.filter(pk=w.busy.pk).update(created_at=now - timedelta(days=90))
    w.idle, w.never = _agent(w, "idle-agent", 90), _agent(w, "never-agent", 90)
    w.busy_used, w.idle_used = (now - timedelta(days=2)).replace(second=7), (now - timedelta(days=70)).replace(second=3)
    _signed_in(w.busy, w.busy_used - timedelta(days=5))
    _signed_in(w.idle, w.idle_used)
    # A permission's use (docs/design.md, R32): busy's token carrying User.Read.All was introspected two days ago.
    AccessToken.objects.create(token_hash="consumers-agree-busy", agent=w.busy, client_id=w.busy.identity.client_id,
                               scopes=["User.Read.All"], issued_at=w.busy_used, expires_at=w.busy_used + timedelta(
                                   hours=1), last_used_at=w.busy_used)
    rollup.catch_up()  # these are in the rollup
    _signed_in(w.busy, w.busy_used)  # these are in the tail
    _signed_in(w.busy, now - timedelta(hours=1), outcome="failure")
    _signed_in(w.never, now - timedelta(hours=1), outcome="blocked")
    return w


@pytest.mark.parametrize("rolled_up", [False, True], ids=["rollup_and_tail", "all_rolled_up"])
def test_every_consumer_of_used_agrees_on_a_seeded_set(client, seeded, rolled_up):
    w = seeded
    if rolled_up:
        rollup.catch_up()
    expected = {w.busy.pk: w.busy_used, w.idle.pk: w.idle_used}
    assert selectors.last_used([w.busy.pk, w.idle.pk, w.never.pk]) == expected

    # The registry: the agent page and the list show the same instant with its zone; "never" for the unused one.
    client.force_login(w.owner)
    for agent in (w.busy, w.idle, w.never):
        detail = client.get(f"/agents/{agent.pk}/").content.decode().split('id="last-used"')[1][:250]
        assert (shown(expected[agent.pk]) if agent.pk in expected else ">never<") in detail
    listing = client.get("/agents/").content.decode()
    for agent in (w.busy, w.idle, w.never):
        row = listing.split(f'data-agent="{agent.name}"')[1].split("</tr>")[0]
        assert (shown(expected[agent.pk]) if agent.pk in expected else "never") in row

    # The hygiene agent (read through the agent facts): idle and never are unused agents, busy is not.
    found = {(f.agent_id, f.kind): f.detail for f in hygiene.findings(Agent.objects.filter(workspace=w.alpha))}
    assert (w.busy.pk, "agent_unused") not in found
    assert (w.busy.pk, "permission_unused") not in found  # User.Read.All was used two days ago
    assert f"no token since {shown(w.idle_used)}" in found[(w.idle.pk, "agent_unused")]
    assert "no token ever" in found[(w.never.pk, "agent_unused")]

    # The agent-facts API, as the hygiene agent reads it with its own token.
    reader = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("FactsReader", permissions=EVERY_READ), "facts-reader", sponsors=[w.owner],
        owners=[w.owner]))
    token = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": reader.client_id,
                                          "client_secret": reader.client_secret}).json()["access_token"]
    body = client.get("/api/v1/agent-facts/", {"workspace": "alpha"}, HTTP_AUTHORIZATION=f"Bearer {token}").json()
    usage = {item["id"]: item["usage"] for item in body["results"]}
    assert usage[w.never.pk] == {"last_used": None, "scopes_30d": [], "permissions_used_30d": []}
    assert usage[w.idle.pk] == {"last_used": w.idle_used.isoformat().replace("+00:00", "Z"), "scopes_30d": [],
                                "permissions_used_30d": []}
    assert usage[w.busy.pk] == {"last_used": w.busy_used.isoformat().replace("+00:00", "Z"),
                                "scopes_30d": ["User.Read.All"], "permissions_used_30d": ["User.Read.All"]}

    # The access review: the evidence is the same instant; the never-used agent has no last use, and says so.
    campaign = review_create(actor=w.owner, workspace=w.alpha, name="Agents", scope_kind="workspace_agents",
                             reviewer_kind="sponsors", starts_at=timezone.now() - timedelta(hours=1),
                             duration_days=7)
    items = {item.agent_id: item for item in campaign.instances.get().items.all()}
    assert items[w.busy.pk].last_used_at == w.busy_used and items[w.busy.pk].recommendation == "approve"
    assert f"last use {shown(w.busy_used)}" in items[w.busy.pk].recommendation_reason
    assert items[w.idle.pk].last_used_at == w.idle_used and items[w.idle.pk].recommendation == "deny"
    assert f"last use {shown(w.idle_used)}" in items[w.idle.pk].recommendation_reason
    assert items[w.never.pk].last_used_at is None and items[w.never.pk].recommendation == "deny"
    assert "no recorded use since set-up" in items[w.never.pk].recommendation_reason
    page = client.get(f"/governance/reviews/{campaign.pk}/review/").content.decode()
    assert f"last use {shown(w.busy_used)}" in page and "last use never" in page


@pytest.mark.parametrize("rolled_up", [False, True], ids=["rollup_and_tail", "all_rolled_up"])
def test_the_risk_job_flags_only_scopes_never_used_before(seeded, rolled_up):
    """busy used User.Read.All before; a sign-in now granting it and Policy.Read.All raises one detection, for the
    new scope. idle's first sign-in in the window is not "new" (nothing to compare with is not a change)."""
    w = seeded
    if rolled_up:
        rollup.catch_up()
    now = timezone.now()
    _signed_in(w.busy, now - timedelta(seconds=30), scopes=("User.Read.All", "Policy.Read.All"))
    _signed_in(w.never, now - timedelta(seconds=20), scopes=("User.Read.All",))
    counts = risk.evaluate_risk()
    assert counts["new_scope"] == 1
    assert list(RiskDetection.objects.filter(kind="new_scope").values_list("agent_id", "key")) == [
        (w.busy.pk, "Policy.Read.All")]


def test_a_review_never_says_used_of_an_agent_never_used(settings):
    """The recommendation's words follow the same definition: a recent set-up never used is "not used yet", an old
    one "unused since set-up"; only a real use is "last use"."""
    settings.REVIEW_INACTIVE_DAYS = 30
    now = timezone.now()
    kind, reason = recommend(None, now, set_up_at=now - timedelta(days=3))
    assert kind == "approve" and "not used yet" in reason and "Used within" not in reason
    assert f"no recorded use since set-up on {shown(now - timedelta(days=3))}" in reason
    kind, reason = recommend(None, now, set_up_at=now - timedelta(days=40))
    assert kind == "deny" and "Unused for 40 days" in reason and "no recorded use since set-up" in reason
    kind, reason = recommend(now - timedelta(days=2), now, set_up_at=now - timedelta(days=40))
    assert kind == "approve" and f"last use {shown(now - timedelta(days=2))}" in reason
