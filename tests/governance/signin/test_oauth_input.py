"""The OAuth endpoints read hostile input without failing (R22): control characters, broken HTTP Basic credentials,
repeated parameters and over-long values get RFC 6749's error bodies (never a 500), are kept in the sign-in log in a
capped, printable form, and are never echoed back at length. Run on SQLite and on PostgreSQL (which refuses NUL in
text: the 500 these tests were written against)."""

from __future__ import annotations

import base64
import json

import pytest

from agents import registry
from governance.signin import oauth, tokens
from governance.signin.models import AccessToken, SignIn

pytestmark = pytest.mark.django_db

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


def _basic_raw(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture
def agent_client(registry_world) -> tuple[str, str]:
    credential, secret = registry.credential_rotate(actor=None, agent=registry_world.agent)
    return credential.identity.client_id, secret


@pytest.fixture
def resource_server():
    server, secret = tokens.resource_server_create(actor=None, name="Input resource server")
    return server.client_id, secret


def _post(client, path: str, body: str | bytes, **headers):
    return client.post(path, body, content_type="application/x-www-form-urlencoded", **headers)


def _form(**fields: str) -> str:
    """A form body that keeps what it is given (NUL included) percent-encoded."""
    from urllib.parse import urlencode

    return urlencode(fields)


def _assert_oauth_error(response, error: str) -> dict:
    assert response.status_code == (401 if error == "invalid_client" else 400), response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert len(response.content) < 400  # a short description at most, never the value sent
    if response.status_code == 401:
        assert response.has_header("WWW-Authenticate")
    return body


# --- NUL and other control characters ---------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["client_id", "client_secret", "grant_type", "scope", "subject_token",
                                   "subject_token_type"])
@pytest.mark.parametrize("bad", ["\x00", "\x1b[31m", "\r\n"])
def test_r22_a_control_character_in_a_token_parameter_is_invalid_request_and_logged(client, agent_client, field,
                                                                                     bad):
    client_id, secret = agent_client
    fields = {"grant_type": EXCHANGE, "client_id": client_id, "client_secret": secret, "scope": "User.Read.All",
              "subject_token": "aipt_x", "subject_token_type": ACCESS_TOKEN_TYPE}
    fields[field] = fields[field][:3] + bad + fields[field][3:]
    response = _post(client, "/oauth/token/", _form(**fields))
    _assert_oauth_error(response, "invalid_request")
    assert field in response.json()["error_description"]
    row = SignIn.objects.get()
    assert row.outcome == "failure" and row.error == "invalid_request" and not AccessToken.objects.exists()
    stored = json.dumps([row.client_id, row.grant_type, row.requested_scopes, row.reason])
    assert "\\u0000" not in stored and "\x00" not in stored and "\x1b" not in stored and secret not in stored
    if field == "client_id":
        assert row.client_id == client_id[:3] + bad.encode("unicode_escape").decode() + client_id[3:]
        assert row.agent_id is None  # an id that cannot be a client's names no agent


@pytest.mark.parametrize("raw", [b"\x00:secret", b"client\x00:secret", b"client:sec\x00ret", b"client:secret\x7f",
                                 b"\xff\xfe:secret", b"client:\xc3\x28", b"no-colon-here", b"client%00:secret",
                                 b"client%ZZ%C3:secret", b"client:%FF"])
def test_r22_broken_basic_credentials_are_invalid_client_and_logged(client, registry_world, raw):
    response = client.post("/oauth/token/", {"grant_type": "client_credentials"},
                           HTTP_AUTHORIZATION=_basic_raw(raw))
    _assert_oauth_error(response, "invalid_client")
    row = SignIn.objects.get()
    assert row.error == "invalid_client" and "\x00" not in row.client_id and row.reason


@pytest.mark.parametrize("payload", ["not base64!", "Y2xpZW50OnNlY3JldA", "====", "\x00", "é" * 10, "A" * 5000])
def test_r22_basic_credentials_that_are_not_base64_are_invalid_client(client, registry_world, payload):
    response = client.post("/oauth/token/", {"grant_type": "client_credentials"},
                           HTTP_AUTHORIZATION="Basic " + payload)
    _assert_oauth_error(response, "invalid_client")
    assert SignIn.objects.get().error == "invalid_client"


def test_r22_revocation_and_introspection_refuse_control_characters_without_failing(client, agent_client,
                                                                                    resource_server):
    client_id, secret = agent_client
    for fields in ({"token": "aipt_\x00", "client_id": client_id, "client_secret": secret},
                   {"token": "aipt_x", "client_id": client_id + "\x00", "client_secret": secret},
                   {"token": "aipt_x", "client_id": client_id, "client_secret": secret + "\x00"},
                   {"token": "aipt_x", "token_type_hint": "access_token\x00", "client_id": client_id,
                    "client_secret": secret}):
        _assert_oauth_error(_post(client, "/oauth/revoke/", _form(**fields)), "invalid_request")
    _assert_oauth_error(client.post("/oauth/revoke/", {"token": "aipt_x"},
                                    HTTP_AUTHORIZATION=_basic_raw(client_id.encode() + b"\x00:" + secret.encode())),
                        "invalid_client")
    basic = "Basic " + base64.b64encode(f"{resource_server[0]}:{resource_server[1]}".encode()).decode()
    _assert_oauth_error(_post(client, "/oauth/introspect/", _form(token="aipt_\x00"), HTTP_AUTHORIZATION=basic),
                        "invalid_request")
    refused = client.post("/oauth/introspect/", {"token": "aipt_x"},
                          HTTP_AUTHORIZATION=_basic_raw(b"rs-\x00:" + resource_server[1].encode()))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert client.post("/oauth/introspect/", {"token": "aipt_x"},
                       HTTP_AUTHORIZATION="Basic %%%").status_code == 401


def test_r22_a_valid_request_still_gets_its_token(client, agent_client):
    client_id, secret = agent_client
    response = _post(client, "/oauth/token/", _form(grant_type="client_credentials", client_id=client_id,
                                                     client_secret=secret, scope="User.Read.All"))
    assert response.status_code == 200 and response.json()["scope"] == "User.Read.All"


# --- repeated parameters (RFC 6749 §3.1-3.2) ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["scope", "client_secret", "client_id", "grant_type", "subject_token",
                                  "subject_token_type", "unknown_extension"])
def test_r22_a_repeated_token_parameter_is_invalid_request(client, agent_client, name):
    client_id, secret = agent_client
    body = _form(grant_type="client_credentials", client_id=client_id, client_secret=secret) + f"&{name}=a&{name}=b"
    if name in ("grant_type", "client_id", "client_secret"):
        body = body.replace(f"&{name}=a&{name}=b", f"&{name}=b")
    response = _post(client, "/oauth/token/", body)
    _assert_oauth_error(response, "invalid_request")
    assert "Duplicate" in response.json()["error_description"]
    assert SignIn.objects.get().error == "invalid_request" and not AccessToken.objects.exists()


def test_r22_rfc8693_audience_may_repeat_but_several_resources_are_invalid_target(client, agent_client):
    """RFC 8693's audience is not used and may repeat; a token has one resource (R26, docs/oauth.md, "Resource
    indicators"), so several are ``invalid_target``."""
    client_id, secret = agent_client
    body = _form(grant_type="client_credentials", client_id=client_id, client_secret=secret)
    assert _post(client, "/oauth/token/", body + "&audience=a&audience=b").status_code == 200
    response = _post(client, "/oauth/token/", body + "&resource=https://a&resource=https://b")
    _assert_oauth_error(response, "invalid_target")


@pytest.mark.parametrize("name", ["token", "token_type_hint", "client_id", "client_secret", "unknown_extension"])
def test_r22_a_repeated_revocation_parameter_is_invalid_request(client, agent_client, name):
    client_id, secret = agent_client
    value = client.post("/oauth/token/", {"grant_type": "client_credentials", "client_id": client_id,
                                          "client_secret": secret}).json()["access_token"]
    fields = {"token": value, "token_type_hint": "access_token", "client_id": client_id, "client_secret": secret,
              "unknown_extension": "x"}
    body = _form(**fields) + f"&{name}={fields[name]}"
    _assert_oauth_error(_post(client, "/oauth/revoke/", body), "invalid_request")
    assert AccessToken.objects.get().revoked_at is None


@pytest.mark.parametrize("name", ["token", "token_type_hint", "unknown_extension"])
def test_r22_a_repeated_introspection_parameter_is_invalid_request(client, resource_server, name):
    basic = "Basic " + base64.b64encode(f"{resource_server[0]}:{resource_server[1]}".encode()).decode()
    body = _form(token="aipt_x", token_type_hint="access_token", unknown_extension="x") + f"&{name}=again"
    _assert_oauth_error(_post(client, "/oauth/introspect/", body, HTTP_AUTHORIZATION=basic), "invalid_request")


# --- amplification: over-long values and bodies ------------------------------------------------------------------
def test_r22_a_one_megabyte_scope_is_refused_in_a_short_body_and_a_short_row(client, agent_client):
    client_id, secret = agent_client
    huge = "A" * 1_000_000
    response = _post(client, "/oauth/token/", _form(grant_type="client_credentials", client_id=client_id,
                                                    client_secret=secret, scope=huge))
    body = _assert_oauth_error(response, "invalid_request")
    assert "too large" in body["error_description"]
    row = SignIn.objects.get()
    assert len(json.dumps([row.client_id, row.grant_type, row.requested_scopes, row.reason])) < 500


@pytest.mark.parametrize(("field", "limit"), sorted(oauth.MAX_LENGTHS.items()))
def test_r22_a_value_over_its_length_limit_is_invalid_request_and_stored_capped(client, agent_client, field, limit):
    client_id, secret = agent_client
    fields = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    fields[field] = "A" * (limit + 1)
    path = "/oauth/revoke/" if field in ("token", "token_type_hint") else "/oauth/token/"
    response = _post(client, path, _form(**fields))
    body = _assert_oauth_error(response, "invalid_request")
    assert field in body["error_description"] and "A" * 50 not in body["error_description"]
    if path == "/oauth/token/":
        row = SignIn.objects.get()
        assert len(row.client_id) <= 64 and len(row.grant_type) <= 60
        assert sum(len(s) for s in row.requested_scopes) <= oauth.MAX_LENGTHS["scope"]


def test_r22_values_at_their_length_limit_are_read(client, agent_client):
    client_id, secret = agent_client
    scope = " ".join(["User.Read.All"] * (oauth.MAX_LENGTHS["scope"] // 14))
    assert len(scope) <= oauth.MAX_LENGTHS["scope"]
    response = _post(client, "/oauth/token/", _form(grant_type="client_credentials", client_id=client_id,
                                                    client_secret=secret, scope=scope))
    assert response.status_code == 200 and response.json()["scope"] == "User.Read.All"


def test_r22_an_invalid_scope_error_echoes_only_a_short_excerpt(client, agent_client):
    client_id, secret = agent_client
    asked = " ".join(f"Made.Up.Scope{n:04d}" for n in range(100))  # 1,899 characters: within the limit
    response = _post(client, "/oauth/token/", _form(grant_type="client_credentials", client_id=client_id,
                                                    client_secret=secret, scope=asked))
    body = _assert_oauth_error(response, "invalid_scope")
    assert "Made.Up.Scope0000" in body["error_description"] and len(body["error_description"]) <= 200
    assert len(SignIn.objects.get().reason) <= 300
