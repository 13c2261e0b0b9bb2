"""Refresh tokens for people's clients (R27): rotation on every use, reuse kills the family, scope narrows but never
widens, the person's rights are checked again, confidential clients authenticate."""

from __future__ import annotations

import base64

import pytest

from governance.oauth.models import RefreshToken
from governance.risk.models import RiskDetection
from governance.signin.models import AccessToken, SignIn
from portal import directory
from portal.models import DirectoryRole, DirectoryRoleAssignment
from tests.governance.oauth.clients_helper import get_code, make_client, make_person, redeem, refresh

pytestmark = pytest.mark.django_db


def _tokens(client, oauth_client, person, **kwargs) -> dict:
    code, verifier = get_code(client, oauth_client, person, **kwargs)
    response = redeem(client, oauth_client, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()


def test_r27_refresh_token_rotates(client):
    oauth_client, _ = make_client()
    first = _tokens(client, oauth_client, make_person())
    second = refresh(client, oauth_client, first["refresh_token"])
    assert second.status_code == 200, second.content
    body = second.json()
    assert body["refresh_token"] and body["refresh_token"] != first["refresh_token"]
    rows = list(RefreshToken.objects.order_by("pk"))
    assert len(rows) == 2 and rows[0].used_at is not None and rows[1].used_at is None
    assert rows[0].family == rows[1].family
    assert set(AccessToken.objects.values_list("family", flat=True)) == {rows[0].family}
    third = refresh(client, oauth_client, body["refresh_token"])
    assert third.status_code == 200 and SignIn.objects.filter(grant_type="refresh_token", outcome="success") \
        .count() == 2


def test_r27_refresh_token_reuse_revokes_the_family_and_raises_risk(client):
    oauth_client, _ = make_client()
    person = make_person()
    first = _tokens(client, oauth_client, person)
    second = refresh(client, oauth_client, first["refresh_token"]).json()
    replay = refresh(client, oauth_client, first["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    assert not RefreshToken.objects.filter(revoked_at__isnull=True).exists()
    assert not AccessToken.objects.filter(revoked_at__isnull=True).exists()
    assert refresh(client, oauth_client, second["refresh_token"]).json()["error"] == "invalid_grant"
    row = SignIn.objects.get(grant_type="refresh_token", outcome="failure", reason="refresh token reuse")
    assert row.agent_id == oauth_client.agent_id and row.subject_id == person.pk
    detection = RiskDetection.objects.get(agent=oauth_client.agent)
    assert detection.level == "medium" and "refresh token" in detection.detail
    assert first["refresh_token"] not in detection.detail


def test_r27_refresh_scope_narrows_but_never_widens(client):
    oauth_client, _ = make_client()
    first = _tokens(client, oauth_client, make_person(), scope="User.Read.All Policy.Read.All offline_access")
    wider = refresh(client, oauth_client, first["refresh_token"], scope="User.Read.All Group.Read.All")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrower = refresh(client, oauth_client, first["refresh_token"], scope="User.Read.All")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "User.Read.All"
    full = refresh(client, oauth_client, narrower.json()["refresh_token"])
    assert set(full.json()["scope"].split()) == {"User.Read.All", "Policy.Read.All"}


def test_r13_refresh_checks_the_persons_rights_again(client):
    oauth_client, _ = make_client()
    person = make_person()
    first = _tokens(client, oauth_client, person)
    role = DirectoryRole.objects.get(key="security-reader")
    directory.role_unassign(actor=None, assignment=DirectoryRoleAssignment.objects.get(user=person, role=role))
    response = refresh(client, oauth_client, first["refresh_token"])
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_r27_without_offline_access_no_refresh_token(client):
    oauth_client, _ = make_client()
    body = _tokens(client, oauth_client, make_person(), scope="User.Read.All")
    assert "refresh_token" not in body and not RefreshToken.objects.exists()


def test_r27_confidential_client_authenticates_with_its_agents_secret(client):
    oauth_client, secret = make_client(public=False, name="confidential")
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    assert redeem(client, oauth_client, code, verifier).json()["error"] == "invalid_client"  # no secret
    code, verifier = get_code(client, oauth_client, person)
    basic = "Basic " + base64.b64encode(f"{oauth_client.client_id}:{secret}".encode()).decode()
    response = client.post("/oauth/token/", {"grant_type": "authorization_code", "code": code,
                                             "redirect_uri": "http://127.0.0.1/callback", "code_verifier": verifier},
                           HTTP_AUTHORIZATION=basic)
    assert response.status_code == 200, response.content
    body = response.json()
    assert refresh(client, oauth_client, body["refresh_token"], secret="wrong").json()["error"] == "invalid_client"
    rotated = refresh(client, oauth_client, body["refresh_token"], secret=secret)
    assert rotated.status_code == 200
    revoked = client.post("/oauth/revoke/", {"token": rotated.json()["refresh_token"]}, HTTP_AUTHORIZATION=basic)
    assert revoked.status_code == 200
    assert not RefreshToken.objects.filter(revoked_at__isnull=True).exists()


def test_r27_other_grants_still_reach_the_agents_endpoint(client):
    response = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": "nobody",
                                             "client_secret": "x"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    too_long = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": "x" * 100,
                                             "client_secret": "x"})
    assert too_long.status_code == 400  # the agents' 64-character limit is unchanged
    long_ok = client.post("/oauth/token/", {"grant_type": "refresh_token", "refresh_token": "nope",
                                            "client_id": "https://a.example/" + "x" * 200})
    assert long_ok.status_code == 401 and long_ok.json()["error"] == "invalid_client"


@pytest.mark.parametrize("field", ["code", "redirect_uri", "code_verifier", "refresh_token"])
def test_r27_grant_values_over_their_limit_are_invalid_request(client, field):
    from governance.oauth.endpoints import GRANT_LIMITS

    oauth_client, _ = make_client()
    grant = "refresh_token" if field == "refresh_token" else "authorization_code"
    data = {"grant_type": grant, "client_id": oauth_client.client_id, field: "A" * (GRANT_LIMITS[field] + 1)}
    response = client.post("/oauth/token/", data)
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    assert field in response.json()["error_description"] and "A" * 50 not in response.content.decode()
    assert SignIn.objects.get().error == "invalid_request"


def test_r27_a_client_without_the_refresh_token_grant_gets_no_refresh_token(client):
    oauth_client, _ = make_client(grant_types=("authorization_code",))
    body = _tokens(client, oauth_client, make_person())
    assert "refresh_token" not in body and not RefreshToken.objects.exists()
    refused = refresh(client, oauth_client, "aiprt_anything")
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
