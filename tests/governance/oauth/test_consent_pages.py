"""The consent page and "Connected apps" (R27): what a person is shown before consenting, CSRF, refusal, and who
may revoke a consent."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.test import Client

from governance.oauth import consent as consents
from governance.oauth.models import Consent
from governance.signin import resources
from governance.signin.models import ResourceServer
from portal.models import AuditEvent
from tests.factories import UserFactory, grant_role
from tests.governance.oauth.clients_helper import (
    authorize_params,
    get_code,
    make_client,
    make_person,
    pkce_pair,
    query_of,
    redeem,
)

pytestmark = pytest.mark.django_db


def test_r27_consent_page_names_the_client_its_registry_entry_the_resource_and_each_scope(client):
    oauth_client, _ = make_client(name="notes-app")
    server = ResourceServer.objects.create(name="Notes MCP", client_id="rs-notes", secret_hash="0" * 64,
                                          identifier="https://mcp.example/notes", scopes=["User.Read.All"])
    resources.resources_changed()
    person = make_person()
    client.force_login(person)
    _v, challenge = pkce_pair()
    page = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge, resource=server.identifier,
                                                            scope="User.Read.All Policy.Read.All offline_access"))
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    text = page.content.decode()
    for shown in ("notes-app app", "notes-app", "Microsoft Publisher", "owner-notes-app", "Approved", "Notes MCP",
                  "https://mcp.example/notes", "Read all users&#x27; full profiles", "stay connected"):
        assert shown in text, shown
    assert f"/agents/{oauth_client.agent_id}/" not in text  # the person may not see the agent
    assert "Policy.Read.All" in text and "not accepted by the resource" in text  # left out, said so
    owner = oauth_client.agent.workspace.memberships.filter(role="owner").first().user
    owner.groups.clear()
    grant_role(owner, "security-reader")
    client.force_login(owner)
    assert f"/agents/{oauth_client.agent_id}/" in client.get(
        "/oauth/authorize/", authorize_params(oauth_client, challenge)).content.decode()


def test_r27_consent_post_needs_csrf(client):
    oauth_client, _ = make_client()
    person = make_person()
    _v, challenge = pkce_pair()
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(person)
    response = strict.post("/oauth/authorize/?" + urlencode(authorize_params(oauth_client, challenge)),
                           {"decision": "approve"})
    assert response.status_code == 403 and not Consent.objects.exists()


def test_r27_deny_sends_access_denied_and_is_audited(client):
    oauth_client, _ = make_client()
    client.force_login(make_person())
    _v, challenge = pkce_pair()
    params = authorize_params(oauth_client, challenge)
    response = client.post("/oauth/authorize/?" + urlencode(params), {"decision": "deny"})
    query = query_of(response["Location"])
    assert query["error"] == "access_denied" and query["state"] == "xyz"
    assert AuditEvent.objects.filter(action="oauth.consent.deny").exists() and not Consent.objects.exists()


def test_r27_connected_apps_lists_only_the_persons_consents(client):
    oauth_client, _ = make_client()
    alice, bob = make_person("alice"), make_person("bob")
    get_code(client, oauth_client, alice)
    client.force_login(bob)
    page = client.get("/oauth/connected-apps/")
    assert page.status_code == 200 and "No connected apps" in page.content.decode()
    client.force_login(alice)
    assert str(oauth_client) in client.get("/oauth/connected-apps/").content.decode()


def test_r27_client_administrators_may_revoke_a_persons_consent(client):
    oauth_client, _ = make_client(name="adminapp")
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    redeem(client, oauth_client, code, verifier)
    consent = Consent.objects.get()
    stranger = UserFactory(username="stranger")
    assert not consents.can_revoke(stranger, consent)
    secadmin = UserFactory(username="sa")
    grant_role(secadmin, "security-administrator")
    client.force_login(secadmin)
    assert client.post(f"/oauth/connected-apps/{consent.pk}/revoke/").status_code == 302
    consent.refresh_from_db()
    assert consent.revoked_by == secadmin
    event = AuditEvent.objects.get(action="oauth.consent.revoke")
    assert event.after["person"] == person.username and event.after["revoked_access"] == 1


def test_r27_a_remembered_consent_without_offline_access_asks_again_for_it(client):
    oauth_client, _ = make_client()
    person = make_person()
    get_code(client, oauth_client, person, scope="User.Read.All")
    _v, challenge = pkce_pair()
    covered = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge, scope="User.Read.All"))
    assert covered.status_code == 302 and "code" in query_of(covered["Location"])
    wider = client.get("/oauth/authorize/", authorize_params(oauth_client, challenge))  # adds offline_access
    assert wider.status_code == 200 and "stay connected" in wider.content.decode()


def test_r27_a_clients_consents_are_listed_for_its_administrators_only(client):
    oauth_client, _ = make_client(name="listed")
    person = make_person()
    get_code(client, oauth_client, person)
    owner = oauth_client.agent.workspace.memberships.filter(role="owner").first().user
    assert [c.user for c in consents.consents_of_client(owner, oauth_client)] == [person]
    assert not consents.consents_of_client(person, oauth_client).exists()
    assert not consents.consents_of_client(UserFactory(username="outsider"), oauth_client).exists()
