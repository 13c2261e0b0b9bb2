"""R32: evidence of use per permission in access reviews, one definition of a permission's use shared with the
hygiene agent (docs/design.md, R32 and "Usage").

A seeded agent holds five permissions: two come with its blueprint (User.Read.All, Policy.Read.All), one from the
access package "Triage" (SecurityIncident.Read.All) and two from the package "Hunting" (ThreatHunting.Read.All,
SecurityAlert.Read.All). In the review window User.Read.All is introspected by a resource server, Policy.Read.All
authenticates a call to the portal API and SecurityIncident.Read.All is asked for in a run; ThreatHunting.Read.All
was introspected 45 days ago only, SecurityAlert.Read.All never. Every use goes through the real paths.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from agents.models import Agent
from governance.access import services as ap
from governance.access.models import Assignment
from governance.reviews.applying import review_instance_apply, review_instance_close
from governance.reviews.campaigns import review_create
from governance.reviews.decisions import review_decide
from governance.reviews.models import ReviewItemPermission
from governance.reviews.permissions import review_permission_decide, review_permissions_accept_advice
from governance.runs.builtin import hygiene
from governance.runs.models import Run
from governance.signin import tokens
from governance.signin.models import AccessToken
from governance.usage import rollup
from governance.usage import selectors as usage
from portal.models import AuditEvent, Permission
from tests.factories import agent_spec, make_blueprint

pytestmark = pytest.mark.django_db

INTROSPECTED, API, RUN = "User.Read.All", "Policy.Read.All", "SecurityIncident.Read.All"
BEFORE_WINDOW, NEVER = "ThreatHunting.Read.All", "SecurityAlert.Read.All"


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def _package(w, name: str, names: list[str]):
    return ap.package_save(actor=w.owner, workspace=w.alpha, name=name,
                           policy={"approver_kind": "none", "justification_required": False},
                           permissions=Permission.objects.filter(name__in=names, kind="application"))


def _token(client, agent: Agent, scope: str) -> str:
    credential, secret = registry.credential_rotate(actor=None, agent=agent)
    response = client.post("/oauth/token/", {"grant_type": "client_credentials", "scope": scope},
                           HTTP_AUTHORIZATION=_basic(credential.identity.client_id, secret))
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def _introspect(client, server, value: str) -> dict:
    response = client.post("/oauth/introspect/", {"token": value}, HTTP_AUTHORIZATION=_basic(*server))
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def seeded(registry_world, client):
    w = registry_world
    blueprint = make_blueprint("Evidence", permissions=(INTROSPECTED, API))
    w.a = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        blueprint, "agent-a", sponsors=[w.owner], owners=[w.owner_b])).agent
    w.triage, w.hunting = _package(w, "Triage", [RUN]), _package(w, "Hunting", [BEFORE_WINDOW, NEVER])
    w.triage_assignment = ap.assignment_request(actor=w.owner, package=w.triage, agent=w.a)
    w.hunting_assignment = ap.assignment_request(actor=w.owner, package=w.hunting, agent=w.a)
    server, secret = tokens.resource_server_create(actor=None, name="Evidence resource server")
    w.server = (server.client_id, secret)
    now = timezone.now()

    # Before the window: ThreatHunting.Read.All introspected 45 days ago (the service, with that moment's clock).
    w.old_value = _token(client, w.a, BEFORE_WINDOW)
    w.before_window = (now - timedelta(days=45)).replace(microsecond=0)
    assert tokens.introspect(w.old_value, now=w.before_window)["active"] is True
    # In the window: introspected by a resource server, used at the portal API, asked for in a run.
    assert _introspect(client, w.server, _token(client, w.a, INTROSPECTED))["active"] is True
    api_value = _token(client, w.a, API)
    client.get("/api/v1/agents/", HTTP_AUTHORIZATION=f"Bearer {api_value}")
    run = Run.objects.create(agent=w.a, scopes=[RUN])
    tokens.run_token_issue(run, expires_at=now + timedelta(minutes=10))
    # Granted but never presented anywhere: not a use.
    w.never_value = _token(client, w.a, NEVER)
    return w


def _agent_review(w):
    return review_create(actor=w.owner, workspace=w.alpha, name="Agents", scope_kind="workspace_agents",
                         reviewer_kind="sponsors", starts_at=timezone.now() - timedelta(hours=1),
                         duration_days=7)


def _package_review(w, **options):
    return review_create(actor=w.owner_b, workspace=w.alpha, name="Packages", scope_kind="packages",
                         packages=[w.triage, w.hunting], reviewer_kind="sponsors",
                         starts_at=timezone.now() - timedelta(hours=1), duration_days=7, **options)


def _rows(item) -> dict[str, ReviewItemPermission]:
    return {row.permission: row for row in item.permissions.all()}


def _shown(moment) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def test_r32_only_introspection_api_and_runs_mark_a_token_used(seeded):
    w = seeded
    used = {tuple(t.scopes): t.last_used_at for t in AccessToken.objects.filter(agent=w.a)}
    assert used[(BEFORE_WINDOW,)] == w.before_window
    assert all(used[(name,)] is not None for name in (INTROSPECTED, API, RUN))
    assert used[(NEVER,)] is None  # issued, never presented


@pytest.mark.parametrize("folded", [False, True], ids=["tokens_tail", "folded"])
def test_r32_agent_review_recommends_per_permission_with_exact_words(seeded, folded):
    w = seeded
    if folded:
        rollup.catch_up()  # the same answer from PermissionUse as from the tokens themselves
        assert rollup.fold_token_use()["token_uses_folded"] >= 0  # a second fold changes nothing
    instance = _agent_review(w).instances.get()
    item = instance.items.get(agent=w.a)
    rows = _rows(item)
    assert {name: (row.used, row.advice, row.source) for name, row in rows.items()} == {
        INTROSPECTED: (True, "keep", "blueprint"), API: (True, "keep", "blueprint"),
        RUN: (True, "keep", "package"), BEFORE_WINDOW: (False, "remove", "package"),
        NEVER: (False, "remove", "package")}
    assert rows[BEFORE_WINDOW].last_used_at == w.before_window and rows[NEVER].last_used_at is None
    assert item.permission_advice == (
        "Keep Policy.Read.All, SecurityIncident.Read.All, User.Read.All; "
        "remove SecurityAlert.Read.All, ThreatHunting.Read.All. "
        f"Use counted since {_shown(instance.evidence_since)}.")
    assert instance.evidence_since <= timezone.now() - timedelta(days=30)


def test_r32_the_review_page_shows_each_permission_and_its_last_use(seeded, client):
    w = seeded
    campaign = _agent_review(w)
    client.force_login(w.owner)
    page = client.get(f"/governance/reviews/{campaign.pk}/review/").content.decode()
    block = page.split('data-item="agent-a"')[1].split('id="item-')[0]
    row = block.split(f'data-permission="{BEFORE_WINDOW}"')[1].split("</tr>")[0]
    assert 'data-used="no"' in row and _shown(w.before_window) in row and "Remove: not used" in row
    never = block.split(f'data-permission="{NEVER}"')[1].split("</tr>")[0]
    assert ">never<" in never
    assert 'data-used="yes"' in block.split(f'data-permission="{RUN}"')[1].split("</tr>")[0]
    assert "Keep Policy.Read.All, SecurityIncident.Read.All, User.Read.All; remove" in block


def test_r32_unused_automatic_permissions_cannot_be_removed_the_advice_is_keep_or_retire(registry_world):
    w = registry_world  # its agent's blueprint permission (User.Read.All) was never used
    instance = _agent_review(w).instances.get()
    item = instance.items.get(agent=w.agent)
    row = item.permissions.get()
    assert (row.permission, row.used, row.advice) == ("User.Read.All", False, "retire_or_keep")
    assert item.permission_advice.startswith("User.Read.All is not used but comes with the agent and cannot be "
                                             "removed on its own: keep the agent or retire it.")
    with pytest.raises(ValidationError, match="comes with the agent and cannot be removed"):
        review_permission_decide(actor=w.owner, permission=row, decision="remove")
    assert review_permissions_accept_advice(actor=w.owner, item=item) == 1
    row.refresh_from_db()
    assert row.decision == "keep"


def test_r32_removing_the_unused_package_permissions_ends_the_assignment_and_its_tokens(seeded, client):
    w = seeded
    live = AccessToken.objects.get(agent=w.a, scopes=[NEVER])
    assert live.revoked_at is None
    instance = _package_review(w, no_response="keep").instances.get()
    hunting = instance.items.get(assignment=w.hunting_assignment)
    triage = instance.items.get(assignment=w.triage_assignment)
    assert hunting.permission_advice.startswith("Remove SecurityAlert.Read.All, ThreatHunting.Read.All.")
    assert triage.permission_advice.startswith("Keep SecurityIncident.Read.All.")
    client.force_login(w.owner)  # the sponsor reviews; through the page's endpoint
    response = client.post(f"/governance/reviews/items/{hunting.pk}/permissions/", {"accept_advice": "1"})
    assert response.status_code == 302
    assert set(hunting.permissions.values_list("decision", flat=True)) == {"remove"}
    event = AuditEvent.objects.get(action="review.permission_decide", target_id=str(hunting.pk))
    assert event.after["accepted_recommendation"] is True and len(event.after["changes"]) == 2
    review_instance_close(actor=w.owner_b, instance=instance)
    counts = review_instance_apply(instance=instance)
    assert counts == {"removed": 1, "already_ended": 0}
    ended = Assignment.objects.get(pk=w.hunting_assignment.pk)
    assert ended.status == "revoked" and "removed as unused" in ended.end_reason
    revoke = AuditEvent.objects.get(action="assignment.revoke", target_id=str(ended.pk))
    assert revoke.before["status"] == "active" and revoke.after["status"] == "revoked"
    live.refresh_from_db()
    assert live.revoked_at is not None  # the token carrying the removed permission
    assert _introspect(client, w.server, w.never_value) == {"active": False}
    assert Assignment.objects.get(pk=w.triage_assignment.pk).status == "active"  # kept: in use
    assert set(hunting.permissions.values_list("applied_result", flat=True)) == {"removed: the assignment ended"}
    assert review_instance_apply(instance=instance) == {"removed": 0, "already_ended": 0}  # once


def test_r32_removing_part_of_a_package_keeps_the_assignment_and_says_why(seeded):
    w = seeded
    instance = _agent_review(w).instances.get()
    item = instance.items.get(agent=w.a)
    never = item.permissions.get(permission=NEVER)
    review_permission_decide(actor=w.owner, permission=never, decision="remove")
    review_decide(actor=w.owner, item=item, decision="approve")
    review_instance_close(actor=w.owner, instance=instance)
    review_instance_apply(instance=instance)
    never.refresh_from_db()
    assert never.applied_result.startswith("kept: the access package is held whole")
    assert Assignment.objects.get(pk=w.hunting_assignment.pk).status == "active"


def test_r32_hygiene_and_review_agree_on_unused_permissions(seeded):
    w = seeded
    idle = registry.agent_create(actor=w.owner, workspace=w.alpha, spec=agent_spec(
        make_blueprint("Idle", permissions=("Group.Read.All",)), "agent-idle", sponsors=[w.owner],
        owners=[w.owner_b])).agent
    agents = Agent.objects.filter(pk__in=[w.a.pk, idle.pk])
    found = hygiene.findings(agents)
    from_hygiene: dict[int, set[str]] = {}
    for finding in found:
        if finding.kind == "permission_unused":
            from_hygiene.setdefault(finding.agent_id, set()).update(finding.permission.split(", "))
    instance = _agent_review(w).instances.get()
    from_review = {agent_id: set(names) for agent_id, names in
                   [(a.pk, instance.items.get(agent=a).permissions.filter(used=False)
                     .values_list("permission", flat=True)) for a in (w.a, idle)]}
    assert from_hygiene == from_review == {w.a.pk: {BEFORE_WINDOW, NEVER}, idle.pk: {"Group.Read.All"}}
    # and both read the one selector
    held = {w.a.pk: [INTROSPECTED, API, RUN, BEFORE_WINDOW, NEVER]}
    evidence = usage.permission_evidence(held, timezone.now() - timedelta(days=30))
    assert {e.permission for e in evidence[w.a.pk] if not e.used} == {BEFORE_WINDOW, NEVER}


def test_r32_introspection_marks_a_token_at_most_once_a_minute(seeded, client):
    w = seeded
    value = _token(client, w.a, INTROSPECTED)
    _introspect(client, w.server, value)
    with CaptureQueriesContext(connection) as first:
        _introspect(client, w.server, value)  # marked a moment ago: no UPDATE
    assert not [q for q in first.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    token = AccessToken.objects.get(token_hash=tokens.hash_token(tokens.claims_of(value)["jti"]))
    stamp = token.last_used_at
    assert tokens.introspect(value, now=stamp + timedelta(seconds=30))["active"] is True
    token.refresh_from_db()
    assert token.last_used_at == stamp  # within the minute
    later = stamp + timedelta(seconds=61)
    with CaptureQueriesContext(connection) as second:
        tokens.introspect(value, now=later)
    assert len([q for q in second.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]) == 1
    token.refresh_from_db()
    assert token.last_used_at == later


def _reviewed_agents(w, count: int) -> None:
    package = _package(w, f"Bulk {count}", [RUN, NEVER])
    specs = [agent_spec(w.blueprint, f"bulk-{count}-{i}", sponsors=[w.owner], owners=[w.owner_b])
             for i in range(count)]
    for provisioned in registry.agents_provision(actor=w.owner, workspace=w.alpha, specs=specs):
        ap.assignment_request(actor=w.owner, package=package, agent=provisioned.agent)
    w.bulk = review_create(actor=w.owner_b, workspace=w.alpha, name=f"Bulk {count}", scope_kind="packages",
                           packages=[package], reviewer_kind="sponsors",
                           starts_at=timezone.now() - timedelta(hours=1), duration_days=7)


def _queries(client, url: str) -> int:
    client.get(url)  # once first: per-process caches (content types, settings rows) are warm for both sizes
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured.captured_queries)


def test_r32_review_pages_run_a_constant_number_of_queries(registry_world, client):
    w = registry_world
    client.force_login(w.owner)
    counts = []
    for count in (2, 8):
        _reviewed_agents(w, count)
        mine = _queries(client, f"/governance/reviews/{w.bulk.pk}/review/")
        client.force_login(w.owner_b)
        results = _queries(client, f"/governance/reviews/{w.bulk.pk}/results/")
        client.force_login(w.owner)
        page = client.get(f"/governance/reviews/{w.bulk.pk}/review/").content.decode()
        assert page.count("data-permission=") == 2 * count
        counts.append((mine, results))
    assert counts[0] == counts[1]


def _when(value: str | None):
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_r32_the_reviews_api_gives_each_permission_its_use_last_use_and_advice(seeded, client):
    w = seeded
    campaign = _agent_review(w)
    item = campaign.instances.get().items.get(agent=w.a)
    rows = _rows(item)
    client.force_login(w.owner)  # the sponsor reviews
    listed = {i["agent"]: i for i in client.get(f"/api/v1/reviews/{campaign.pk}/decisions/").json()}
    got = listed["agent-a"]
    assert got["permission_advice"] == item.permission_advice
    assert got["permission_advice"].startswith("Keep Policy.Read.All, SecurityIncident.Read.All, User.Read.All; "
                                               "remove SecurityAlert.Read.All, ThreatHunting.Read.All.")
    hunting, triage = w.hunting_assignment.pk, w.triage_assignment.pk
    assert [(p["permission"], p["source"], p["assignment"], p["used"], p["advice"], p["decision"])
            for p in got["permissions"]] == [
        (API, "blueprint", None, True, "keep", None),
        (NEVER, "package", hunting, False, "remove", None),
        (RUN, "package", triage, True, "keep", None),
        (BEFORE_WINDOW, "package", hunting, False, "remove", None),
        (INTROSPECTED, "blueprint", None, True, "keep", None)]
    last = {p["permission"]: _when(p["last_used_at"]) for p in got["permissions"]}
    assert last == {name: row.last_used_at for name, row in rows.items()}
    assert last[BEFORE_WINDOW] == w.before_window and last[NEVER] is None
    assert all(last[name] is not None for name in (API, RUN, INTROSPECTED))
    assert {p["id"] for p in got["permissions"]} == {row.pk for row in rows.values()}
    # A reviewer's choice per permission shows in the answer of a decision.
    review_permission_decide(actor=w.owner, permission=rows[NEVER], decision="remove")
    decided = client.post(f"/api/v1/reviews/{campaign.pk}/decisions/", {"item": item.pk, "decision": "approve"},
                          content_type="application/json")
    assert decided.status_code == 200
    assert {p["permission"]: p["decision"] for p in decided.json()["permissions"]} == {
        API: None, NEVER: "remove", RUN: None, BEFORE_WINDOW: None, INTROSPECTED: None}


def test_r32_the_results_csv_gives_each_permission_its_use_last_use_advice_and_result(seeded, client):
    w = seeded
    campaign = _agent_review(w)
    instance = campaign.instances.get()
    item = instance.items.get(agent=w.a)
    rows = _rows(item)
    review_permission_decide(actor=w.owner, permission=rows[NEVER], decision="remove")
    review_decide(actor=w.owner, item=item, decision="approve")
    review_instance_close(actor=w.owner, instance=instance)
    review_instance_apply(instance=instance)
    client.force_login(w.owner)
    export = client.get(f"/governance/reviews/{campaign.pk}/results.csv")
    found = {r["agent"]: r for r in csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()))}
    row = found["agent-a"]
    assert row["permission_advice"] == item.permission_advice

    def iso(name):
        return rows[name].last_used_at.astimezone(UTC).isoformat()

    assert row["permissions"].split("; ") == [
        f"{API} (blueprint): used, last use {iso(API)}, advice keep",
        f"{NEVER} (package): not used, last use never, advice remove, decided remove, kept: the access package is "
        "held whole and some of it is still used",
        f"{RUN} (package): used, last use {iso(RUN)}, advice keep",
        f"{BEFORE_WINDOW} (package): not used, last use {w.before_window.astimezone(UTC).isoformat()}, advice remove",
        f"{INTROSPECTED} (blueprint): used, last use {iso(INTROSPECTED)}, advice keep"]
    assert found[w.agent.name]["permissions"] == "User.Read.All (blueprint): not used, last use never, advice " \
                                                 "retire_or_keep"


def test_r32_the_reviews_api_and_the_csv_run_a_constant_number_of_queries(registry_world, client):
    w = registry_world
    counts = []
    for count in (2, 8):
        _reviewed_agents(w, count)
        client.force_login(w.owner)
        api = _queries(client, f"/api/v1/reviews/{w.bulk.pk}/decisions/")
        listed = client.get(f"/api/v1/reviews/{w.bulk.pk}/decisions/").json()
        assert sum(len(i["permissions"]) for i in listed) == 2 * count
        client.force_login(w.owner_b)
        url = f"/governance/reviews/{w.bulk.pk}/results.csv"
        b"".join(client.get(url).streaming_content)
        with CaptureQueriesContext(connection) as captured:
            body = b"".join(client.get(url).streaming_content).decode()
        exported = list(csv.DictReader(io.StringIO(body)))
        assert len(exported) == count and all(r["permissions"].count(" (package): ") == 2 for r in exported)
        counts.append((api, len(captured.captured_queries)))
    assert counts[0] == counts[1]
