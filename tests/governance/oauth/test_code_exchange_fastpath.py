"""The authorization-code exchange on both of its paths (R27; docs/oauth.md, "The exchange's fast path"): the
PostgreSQL statements of ``governance.oauth.fastpath`` and the ORM reference in ``governance.oauth.grants`` give the
same answers and write the same rows, checked by the same assertions; a code stays single use when two requests
present it at once."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from governance.oauth import authorize, fastpath
from governance.oauth.models import AuthorizationCode, RefreshToken
from governance.risk.models import RiskDetection
from governance.signin.models import AccessToken, SignIn
from portal.models import AuditEvent, DirectoryRoleAssignment
from tests.governance.oauth.clients_helper import get_code, make_client, make_person, pkce_pair, redeem, refresh


@pytest.fixture(params=["fast", "orm"])
def path(request, monkeypatch):
    """Each test runs on the PostgreSQL statements ("fast") and on the ORM ("orm"), the reference."""
    if request.param == "fast":
        request.getfixturevalue("postgres")
    else:
        monkeypatch.setattr(fastpath, "enabled", lambda: False)
    return request.param


def _used(code: str) -> bool:
    return AuthorizationCode.objects.get(code_hash=authorize.hash_value(code)).used_at is not None


@pytest.mark.django_db
def test_r27_exchange_issues_access_and_refresh_token_and_one_sign_in_row(client, path):
    oauth_client, _ = make_client()
    person = make_person()
    first_code, first_verifier = get_code(client, oauth_client, make_person("first"))
    assert redeem(client, oauth_client, first_code, first_verifier).status_code == 200  # the first makes a key
    code, verifier = get_code(client, oauth_client, person)
    with CaptureQueriesContext(connection) as queries:
        response = redeem(client, oauth_client, code, verifier)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["scope"] == "User.Read.All" and body["refresh_token"].startswith("aiprt_")
    if path == "fast":  # the read, then the write (the code marked used, three rows); no transaction around them
        assert len(queries.captured_queries) == 2, [q["sql"][:80] for q in queries.captured_queries]
    assert _used(code)
    token = AccessToken.objects.get(subject=person)
    code_row = AuthorizationCode.objects.get(client=oauth_client, user=person)
    assert (token.grant_type, token.actor_kind, token.agent_id, token.family, token.scopes, token.audience) == (
        "authorization_code", "on_behalf_of", oauth_client.agent_id, code_row.family, ["User.Read.All"],
        code_row.resource)
    sign_in = SignIn.objects.get(grant_type="authorization_code", subject=person)
    assert (sign_in.outcome, sign_in.token_id, sign_in.granted_scopes, sign_in.client_id, sign_in.agent_id) == (
        "success", token.pk, ["User.Read.All"], oauth_client.client_id, oauth_client.agent_id)
    rotated = RefreshToken.objects.get(family=code_row.family)
    assert (rotated.user_id, rotated.client_id, rotated.scopes, rotated.resource, rotated.used_at) == (
        person.pk, oauth_client.pk, ["User.Read.All"], code_row.resource, None)
    assert rotated.expires_at > rotated.issued_at == token.issued_at
    assert refresh(client, oauth_client, body["refresh_token"]).status_code == 200


@pytest.mark.django_db
def test_r27_without_offline_access_no_refresh_token(client, path):
    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person, scope="User.Read.All")
    response = redeem(client, oauth_client, code, verifier)
    assert response.status_code == 200 and "refresh_token" not in response.json()
    assert AccessToken.objects.filter(subject=person).count() == 1 and not RefreshToken.objects.exists()


@pytest.mark.django_db
def test_r27_reused_code_revokes_its_family_on_both_paths(client, path):
    oauth_client, _ = make_client()
    code, verifier = get_code(client, oauth_client, make_person())
    assert redeem(client, oauth_client, code, verifier).status_code == 200
    again = redeem(client, oauth_client, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert AccessToken.objects.get().revoked_at is not None and RefreshToken.objects.get().revoked_at is not None
    assert SignIn.objects.filter(reason="authorization code reuse", outcome="failure").count() == 1
    assert RiskDetection.objects.filter(agent=oauth_client.agent, level="medium").count() == 1
    event = AuditEvent.objects.get(action="risk.detect")
    assert (event.target_id, event.target_label, event.workspace_id) == (
        str(oauth_client.agent_id), oauth_client.agent.name, oauth_client.agent.workspace_id)


@pytest.mark.django_db
def test_r27_confidential_client_with_a_wrong_secret_leaves_the_code_unused(client, path):
    oauth_client, secret = make_client(public=False)
    code, verifier = get_code(client, oauth_client, make_person())
    wrong = redeem(client, oauth_client, code, verifier, secret="not-the-secret")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    missing = redeem(client, oauth_client, code, verifier)
    assert missing.status_code == 401 and missing.json()["error"] == "invalid_client"
    assert not _used(code)
    right = redeem(client, oauth_client, code, verifier, secret=secret)
    assert right.status_code == 200, right.content
    assert _used(code)


@pytest.mark.django_db
def test_r27_another_clients_code_or_an_unregistered_grant_leaves_the_code_unused(client, path):
    mine, _ = make_client()
    other, _ = make_client()
    limited, _ = make_client(grant_types=["refresh_token"])
    person = make_person()
    code, verifier = get_code(client, mine, person)
    stolen = redeem(client, other, code, verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    assert not _used(code)
    limited_code = AuthorizationCode.objects.create(
        code_hash="0" * 64, client=limited, user=person, redirect_uri="http://127.0.0.1/callback",
        resource="x", scopes=["User.Read.All"], code_challenge=pkce_pair()[1], family="f" * 32,
        expires_at=AuthorizationCode.objects.get().expires_at)
    refused = client.post("/oauth/token/", {"grant_type": "authorization_code", "code": "c", "code_verifier": "v" * 43,
                                            "redirect_uri": "http://127.0.0.1/callback",
                                            "client_id": limited.client_id})
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    limited_code.refresh_from_db()
    assert limited_code.used_at is None
    assert redeem(client, mine, code, verifier).status_code == 200


@pytest.mark.django_db
def test_r27_unknown_client_and_missing_parameters(client, path):
    oauth_client, _ = make_client()
    code, verifier = get_code(client, oauth_client, make_person())
    unknown = client.post("/oauth/token/", {"grant_type": "authorization_code", "code": code,
                                            "code_verifier": verifier, "redirect_uri": "http://127.0.0.1/callback",
                                            "client_id": "no-such-client"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    missing = redeem(client, oauth_client, code, "")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"
    assert not _used(code)
    assert SignIn.objects.filter(error="invalid_client", reason="unknown client").count() == 1


@pytest.mark.django_db
def test_r27_a_failed_check_after_the_code_was_found_uses_it_up(client, path):
    oauth_client, _ = make_client()
    code, _verifier = get_code(client, oauth_client, make_person())
    wrong = redeem(client, oauth_client, code, pkce_pair()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert _used(code)  # single use, whatever follows
    code2, verifier2 = get_code(client, oauth_client, make_person("bob"))
    elsewhere = redeem(client, oauth_client, code2, verifier2, redirect_uri="http://127.0.0.1:8080/callback")
    assert elsewhere.status_code == 400 and _used(code2)
    assert not AccessToken.objects.exists()


@pytest.mark.django_db
def test_r13_the_persons_rights_are_read_again_at_the_exchange(client, path):
    oauth_client, _ = make_client()
    person = make_person()
    code, verifier = get_code(client, oauth_client, person)
    DirectoryRoleAssignment.objects.filter(user=person).delete()
    response = redeem(client, oauth_client, code, verifier)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    assert SignIn.objects.get(outcome="failure").reason == "nothing consented is still the person's"
    disabled = make_person("carol")
    code, verifier = get_code(client, oauth_client, disabled)
    disabled.is_active = False
    disabled.save(update_fields=["is_active"])
    response = redeem(client, oauth_client, code, verifier)
    assert response.status_code == 400 and "no longer active" in response.json()["error_description"]
    assert not AccessToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_r27_a_code_presented_twice_at_once_issues_at_most_one_token_family(postgres, path):
    """Two connections present the same code at the same moment, several times over: at most one gets tokens, and
    when the other finds the code used it revokes what the first issued (the mark-used waits for the first's
    transaction). PostgreSQL on both paths: SQLite serialises writers by locking the whole database."""
    oauth_client, _ = make_client()
    person = make_person()
    setup = Client()
    codes = [get_code(setup, oauth_client, person) for _ in range(4)]
    for code, verifier in codes:
        barrier = threading.Barrier(2)
        answers = []

        def exchange(code=code, verifier=verifier, barrier=barrier, answers=answers):
            try:
                barrier.wait(timeout=10)
                answers.append(redeem(Client(), oauth_client, code, verifier))
            finally:
                connection.close()

        threads = [threading.Thread(target=exchange) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        statuses = sorted(answer.status_code for answer in answers)
        assert statuses in ([200, 400], [400, 400]), [a.content for a in answers]
        family = AuthorizationCode.objects.get(code_hash=authorize.hash_value(code)).family
        tokens = AccessToken.objects.filter(family=family)
        assert tokens.count() <= 1 and RefreshToken.objects.filter(family=family).count() <= 1
        if statuses == [200, 400]:  # the loser revoked the winner's family
            assert all(t.revoked_at is not None for t in tokens)
            assert all(r.revoked_at is not None for r in RefreshToken.objects.filter(family=family))


@pytest.mark.django_db
@pytest.mark.parametrize("client_id", ["", "x" * 301, "tab\there", "é-not-ascii"])
def test_r27_a_client_id_no_client_can_have_is_unknown(path, client_id):
    """As ``authorize.find_client`` has it (the endpoint refuses such ids before, and NUL never gets this far)."""
    from django.utils import timezone

    from governance.oauth import grants

    result = grants.grant_issue(grants.GrantRequest(
        grant_type="authorization_code", client_id=client_id, secret="", at=timezone.now(), code="c",
        redirect_uri="http://127.0.0.1/callback", code_verifier="v" * 43))
    assert result.outcome.refusal.error == "invalid_client"


@pytest.mark.django_db
def test_r27_a_code_used_between_the_read_and_the_write_is_a_reuse(client, postgres, monkeypatch):
    """The fast path reads the code unlocked and marks it used in the statement that writes the tokens: when another
    request used it in between, nothing is written for this one, and what the other got is revoked."""
    oauth_client, _ = make_client()
    code, verifier = get_code(client, oauth_client, make_person())
    write = fastpath.issue
    other = []

    def another_request_first(*args, **kwargs):
        if not other:
            other.append(None)  # the other request writes unhindered
            other[0] = redeem(Client(), oauth_client, code, verifier)
        return write(*args, **kwargs)

    monkeypatch.setattr(fastpath, "issue", another_request_first)
    late = redeem(client, oauth_client, code, verifier)
    assert other[0].status_code == 200 and late.status_code == 400 and late.json()["error"] == "invalid_grant"
    assert AccessToken.objects.count() == 1 and AccessToken.objects.get().revoked_at is not None
    assert RefreshToken.objects.get().revoked_at is not None
    assert SignIn.objects.filter(reason="authorization code reuse").count() == 1
