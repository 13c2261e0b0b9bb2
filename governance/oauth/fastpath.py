"""The authorization-code exchange on PostgreSQL: two prepared statements instead of ten ORM queries, and no
transaction around them (docs/oauth.md, "The exchange's fast path").

``read`` reads everything the exchange decides on — the client, its agent and the facts conditional access looks
at, the code, the person and the person's data rights — in one statement; ``issue`` marks the code used and writes
the access token, its sign-in row and the refresh token in one statement, atomic by itself, and writes nothing when
the code was used in the meantime; ``use_up`` marks a code used that a check refused. The same pattern as
``governance.signin.fastpath`` (whose statement runner they share): written once, sent with server-side binding,
prepared by psycopg on each connection. The ORM versions in ``governance.oauth.grants`` stay the reference (and the
SQLite path); the tests run both against the same assertions.

The code is marked used by ``UPDATE … WHERE used_at IS NULL RETURNING`` in the statement that writes the tokens: of
two requests presenting the same code at once, the second's update waits for the first's statement and then finds
the code used, so a code is redeemed once, and the tokens the first wrote are there for the second's revocation of
the family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import CharField, JSONField
from psycopg.types.json import Jsonb

from agents.models import Agent, AgentIdentity, AgentUser, AttributeValue, Blueprint
from governance.oauth.models import AuthorizationCode, OAuthClient, RefreshToken
from governance.signin import fastpath as signin_fastpath
from governance.signin.models import AccessToken, SignIn
from governance.signin.tokens import Issuance
from portal.models import DirectoryRole, DirectoryRoleAssignment, Permission, User

enabled = signin_fastpath.enabled
_run = signin_fastpath.run  # the shared runner: health check, Django's errors, query log, prepared statements

CLIENT_COLUMNS = ("id", "client_id", "agent_id", "token_endpoint_auth_method", "grant_types", "approval")
CODE_COLUMNS = ("id", "user_id", "redirect_uri", "resource", "scopes", "offline_access", "code_challenge", "family",
                "expires_at", "used_at")
# What the exchange asks of the client's agent: may it act (status, expiry, run-as user), conditional access's facts
# (kind, risk), the token's claims (blueprint) and, on reuse, its detection and that detection's audit event
# (workspace, name).
AGENT_COLUMNS = ("id", "workspace_id", "blueprint_id", "name", "kind", "identity_type", "run_as_user_id", "status",
                 "expires_at", "risk_level")


@dataclass(frozen=True, slots=True)
class Code:
    """The facts of an authorization code the exchange checks (the ORM path uses the model itself)."""

    id: int
    user_id: int
    redirect_uri: str
    resource: str
    scopes: list[str]
    offline_access: bool
    code_challenge: str
    family: str
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Person:
    """The person a code was issued to: what the exchange checks and puts in the token."""

    pk: int
    is_active: bool
    oauth_subject: object


@dataclass(frozen=True)
class Redemption:
    """What one presentation of a code found: the client (None: unknown client id), the client agent's
    identity's client id (a confidential client authenticates with its agent's credential), the code (None:
    unknown or another client's; its ``used_at`` says whether it was used before), the person it was issued to and
    their data rights now (never a privileged one)."""

    client: OAuthClient | None
    identity_client_id: str | None = None
    code: AuthorizationCode | Code | None = None
    person: User | Person | None = None
    rights: frozenset[str] = frozenset()


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


_READ = None


def _read_sql() -> str:
    perm = _t(Permission)
    role_permissions = _t(DirectoryRole.permissions.through)
    client_cols = ", ".join(f"o.{c}" for c in CLIENT_COLUMNS)
    code_cols = ", ".join(f"k.{c}" for c in CODE_COLUMNS)
    return (
        f"WITH cl AS (SELECT {client_cols} FROM {_t(OAuthClient)} o WHERE o.client_id = %s), "
        f"code AS (SELECT {code_cols} FROM {_t(AuthorizationCode)} k JOIN cl ON cl.id = k.client_id "
        f"WHERE k.code_hash = %s) "
        f"SELECT {', '.join(f'cl.{c}' for c in CLIENT_COLUMNS)}, {', '.join(f'a.{c}' for c in AGENT_COLUMNS)}, "
        f"b.publisher_kind, r.username, r.is_active, i.client_id, "
        f"ARRAY(SELECT v.key || '=' || v.value FROM {_t(AttributeValue)} v WHERE v.agent_id = a.id), "
        f"EXISTS(SELECT 1 FROM {_t(AgentUser)} au WHERE au.identity_id = i.id), "
        f"{', '.join(f'code.{c}' for c in CODE_COLUMNS)}, p.is_active, p.oauth_subject, "
        f"ARRAY(SELECT DISTINCT pm.name FROM {_t(DirectoryRoleAssignment)} ra "
        f"JOIN {role_permissions} rp ON rp.directoryrole_id = ra.role_id JOIN {perm} pm ON pm.id = rp.permission_id "
        f"WHERE ra.user_id = p.id AND p.is_active AND NOT pm.privileged) "
        f"FROM cl JOIN {_t(Agent)} a ON a.id = cl.agent_id JOIN {_t(Blueprint)} b ON b.id = a.blueprint_id "
        f"LEFT JOIN {_t(User)} r ON r.id = a.run_as_user_id LEFT JOIN {_t(AgentIdentity)} i ON i.agent_id = a.id "
        f"LEFT JOIN code ON TRUE LEFT JOIN {_t(User)} p ON p.id = code.user_id")


_JSON_COLUMNS = frozenset({"grant_types", "scopes"})


def _json(column: str, value):
    """A JSON column's value as Python (Django has psycopg hand jsonb over as text, and decodes it itself)."""
    return json.loads(value) if column in _JSON_COLUMNS and isinstance(value, str) else value


def read(client_id: str, code_hash: str | None) -> Redemption:
    """One statement: the client named ``client_id`` with its agent and, when ``code_hash`` is given, its code with
    that hash, the code's person and their data rights. Nothing is changed."""
    global _READ
    if _READ is None:
        _READ = _read_sql()
    rows = _run(_READ, (client_id, code_hash), read_only=True)
    if not rows:
        return Redemption(client=None)
    row = iter(rows[0])
    client = OAuthClient(**{c: _json(c, next(row)) for c in CLIENT_COLUMNS})
    agent = Agent(**{c: next(row) for c in AGENT_COLUMNS})
    agent.publisher_kind = next(row)  # read by conditional access without loading the blueprint
    username, user_active, identity_client_id = next(row), next(row), next(row)
    if agent.run_as_user_id is not None:
        agent.run_as_user = User(pk=agent.run_as_user_id, username=username, is_active=user_active)
    agent.prefetched_attributes = dict(a.split("=", 1) for a in next(row))
    agent.prefetched_has_agent_user = next(row)
    client.agent = agent
    code_values = {c: _json(c, next(row)) for c in CODE_COLUMNS}
    person_active, subject, rights = next(row), next(row), next(row)
    if code_values["id"] is None:
        return Redemption(client=client, identity_client_id=identity_client_id)
    code = Code(**code_values)
    person = Person(pk=code.user_id, is_active=person_active, oauth_subject=subject)
    return Redemption(client=client, identity_client_id=identity_client_id, code=code, person=person,
                      rights=frozenset(rights))


_USE_UP = None


def use_up(code_id: int, at: datetime) -> bool:
    """Mark the code used at ``at``; False when it already was (a concurrent request used it first)."""
    global _USE_UP
    if _USE_UP is None:
        _USE_UP = f"UPDATE {_t(AuthorizationCode)} SET used_at = %s WHERE id = %s AND used_at IS NULL RETURNING id"
    return bool(_run(_USE_UP, (at, code_id)))


# --- writing ---------------------------------------------------------------------------------------------------------
_kinds: dict = {}


def _kind(model, name: str) -> tuple[bool, int | None, str]:
    """(is a JSON column, the text column's length, its SQL type), per column, looked up once."""
    key = (model, name)
    if key not in _kinds:
        field = model._meta.get_field(name)
        _kinds[key] = (isinstance(field, JSONField), field.max_length if isinstance(field, CharField) else None,
                       field.db_type(connection))
    return _kinds[key]


def _columns(model, names, issuance: Issuance, renamed: dict) -> tuple:
    """The values of ``names`` for ``model``'s row, taken from the issuance as ``tokens.issuance_record`` takes
    them (JSON lists for JSON columns, text cut to the column's length)."""
    values = []
    for name in names:
        value = renamed[name] if name in renamed else getattr(issuance, name)
        is_json, length, _type = _kind(model, name)
        if is_json:
            value = Jsonb(list(value))
        elif length and isinstance(value, str):
            value = value[:length]
        values.append(value)
    return tuple(values)


def _typed(model, names) -> str:
    """Placeholders cast to their columns' types: an ``INSERT … SELECT`` does not infer them from the columns."""
    return ", ".join(f"%s::{_kind(model, name)[2]}" for name in names)


REFRESH_COLUMNS = ("token_hash", "family", "client_id", "user_id", "resource", "scopes", "issued_at", "expires_at",
                   "revoked_reason")
_ISSUE: dict[bool, str] = {}


def _issue_sql(with_refresh: bool) -> str:
    token_columns, sign_in_columns = signin_fastpath.TOKEN_COLUMNS, signin_fastpath.SIGN_IN_COLUMNS
    refresh = (f"r AS (INSERT INTO {_t(RefreshToken)} ({', '.join(REFRESH_COLUMNS)}) "
               f"SELECT {_typed(RefreshToken, REFRESH_COLUMNS)} FROM used), ") if with_refresh else ""
    return (f"WITH used AS (UPDATE {_t(AuthorizationCode)} SET used_at = %s WHERE id = %s AND used_at IS NULL "
            f"RETURNING id), {refresh}"
            f"t AS (INSERT INTO {_t(AccessToken)} ({', '.join(token_columns)}) "
            f"SELECT {_typed(AccessToken, token_columns)} FROM used RETURNING id) "
            f"INSERT INTO {_t(SignIn)} ({', '.join(sign_in_columns)}, token_id) "
            f"SELECT {_typed(SignIn, sign_in_columns)}, t.id FROM t RETURNING token_id")


def issue(code_id: int, issuance: Issuance, refresh: dict | None) -> int | None:
    """One statement: mark the code used and write the access token and its sign-in row (the rows
    ``tokens.issuance_record`` writes) and the refresh token, if any; return the access token's id — or write
    nothing and return None when the code was used already."""
    with_refresh = refresh is not None
    if with_refresh not in _ISSUE:
        _ISSUE[with_refresh] = _issue_sql(with_refresh)
    token = _columns(AccessToken, signin_fastpath.TOKEN_COLUMNS, issuance,
                     {"scopes": issuance.granted, "issued_at": issuance.at, "revoked_reason": ""})
    sign_in = _columns(SignIn, signin_fastpath.SIGN_IN_COLUMNS, issuance,
                       {"requested_scopes": issuance.requested, "granted_scopes": issuance.granted})
    refresh_row = tuple(Jsonb(refresh[c]) if c == "scopes" else refresh.get(c, "") for c in REFRESH_COLUMNS) \
        if with_refresh else ()
    rows = _run(_ISSUE[with_refresh], (issuance.at, code_id, *refresh_row, *token, *sign_in))
    return rows[0][0] if rows else None
