"""The OAuth hot paths on PostgreSQL: prepared statements instead of ORM queries.

Every token request authenticates a client, reading its permissions and policy facts with it (one statement:
``authenticate``), and writes its sign-in row with the token it was issued, if any (one statement: ``record``, the
PostgreSQL half of ``tokens.issuance_record``); every introspection authenticates a resource server and reads a
token. Built with the ORM these cost more CPU in query construction and planning than in the work itself (measured:
the token endpoint went from 135 to 484 tokens/s), so on PostgreSQL the statements are written once, sent with
server-side binding and prepared by psycopg on each connection. The ORM versions in ``governance.signin.tokens``
stay the reference (and the SQLite path); the tests run both, against the same assertions, in CI (PostgreSQL) and
``make test`` (SQLite).
"""

from __future__ import annotations

import time
from datetime import datetime

import psycopg
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connection, connections
from psycopg import pq
from psycopg.types.json import Jsonb

from agents.models import (
    Agent,
    AgentIdentity,
    AgentUser,
    AttributeValue,
    Blueprint,
    Credential,
    FederatedCredential,
    PermissionGrant,
)
from governance.access.models import AccessPackage, Assignment
from governance.signin.models import AccessToken, ResourceServer, SignIn
from portal.models import Permission, User

_vendor: list[str] = []  # the default database's vendor, read once: a process never changes its database engine


def enabled() -> bool:
    if not _vendor:
        _vendor.append(connections[DEFAULT_DB_ALIAS].vendor)
    return _vendor[0] == "postgresql"


def _execute(db, sql: str, params: tuple) -> list[tuple]:
    raw = db.connection
    if raw.prepare_threshold is None:
        # Django turns preparation off; allow it for the statements that ask (prepare=True) and only those.
        raw.prepare_threshold = 2**31 - 1
    with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:  # server-side binding: preparable
        cursor.execute(sql, params, prepare=True)
        # Rows only when the statement returns some; asked of the result's status, not of ``cursor.description``,
        # which builds a column object per column on every call.
        result = cursor.pgresult
        return cursor.fetchall() if result is not None and result.status == pq.ExecStatus.TUPLES_OK else []


def run(sql: str, params: tuple, *, read_only: bool = False) -> list[tuple]:
    """Run one statement as Django's own cursors do, on the raw connection: a kept connection is known to work
    before the request relies on it (``CONN_HEALTH_CHECKS``), and an error is raised as Django's and marks the
    connection, so a connection broken by a database restart is closed at the end of the request instead of being
    kept for the next one (docs/design.md, "Faults"). psycopg keeps prepared statements per connection: a new
    connection prepares them again.

    Django checks a kept connection with a ``SELECT 1`` round trip before the request's first query. When that
    first query only reads (``read_only``: every request's first statement on the hot path, the client's
    authentication), the read itself is the check: if it fails on a connection kept from an earlier request, the
    connection is closed, opened again and the read repeated once, which is what the check would have done, for
    one round trip less on every request. A write is never repeated: before one, Django's own check runs.

    The connection is looked up once per statement (``connections[…]``): each attribute read through Django's
    ``connection`` proxy looks it up again in a context-local store, and this function reads a dozen."""
    db = connections[DEFAULT_DB_ALIAS]
    unchecked = db.connection is not None and db.health_check_enabled and not db.health_check_done
    if unchecked and not read_only:
        db.close_if_health_check_failed()
        unchecked = False
    db.ensure_connection()
    started = time.perf_counter()
    try:
        rows = _execute(db, sql, params)
    except (OperationalError, InterfaceError):  # the connection, not the statement
        if not unchecked or db.in_atomic_block:
            raise
        db.close()  # a kept connection the server dropped: what the health check would have found
        db.ensure_connection()
        rows = _execute(db, sql, params)
    if unchecked:
        db.health_check_done = True
    if db.queries_logged:  # counted like any other query (tests, the bench, debug toolbars)
        db.queries_log.append({"sql": sql, "time": f"{time.perf_counter() - started:.3f}"})
    return rows


def _t(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


AGENT_COLUMNS = ("id", "workspace_id", "blueprint_id", "name", "scope", "kind", "identity_type", "run_as_user_id",
                 "status", "disabled_by", "expires_at", "orphaned_at", "retired_at", "risk_level")

_AUTH = None
_ISSUE = None
_SIGN_IN = None
_LIVE = None


def authenticate(secret_hash: str, now: datetime) -> tuple | None:
    """One statement for everything issuance needs about a client: (credential id, client id, *agent columns,
    publisher kind, run-as username, run-as active, own permissions, package permissions, their ends, attributes
    as "key=value", has an agent user) — or None. Privileged permissions are never read: no token carries one."""
    global _AUTH
    if _AUTH is None:
        _AUTH = _client_statement(
            "c.id", f"FROM {_t(Credential)} c JOIN {_t(AgentIdentity)} i ON i.id = c.identity_id ",
            "WHERE c.secret_hash = %s AND c.revoked_at IS NULL AND c.expires_at > %s LIMIT 1")
    rows = run(_AUTH, (now, now, secret_hash, now), read_only=True)
    return rows[0] if rows else None


_AUTH_IDENTITY = None


def authenticate_identity(client_id: str, now: datetime) -> tuple | None:
    """``authenticate``'s twin for a client that proved itself without a secret (a key or a federated
    credential, docs/oauth.md "Agents without secrets"): the same row, keyed by client id, with the identity's id
    first."""
    global _AUTH_IDENTITY
    if _AUTH_IDENTITY is None:
        _AUTH_IDENTITY = _client_statement("i.id", f"FROM {_t(AgentIdentity)} i ",
                                           "WHERE i.client_id = %s LIMIT 1")
    rows = run(_AUTH_IDENTITY, (now, now, client_id), read_only=True)
    return rows[0] if rows else None


_AUTH_IDENTITY_RULES = None


def authenticate_identity_with_rules(client_id: str, issuer: str, now: datetime) -> tuple | None:
    """``authenticate_identity`` and the federated credentials trusting ``issuer`` that the client's agent holds
    (its own and its blueprint's defaults, in force) in one statement: (rules, *the same row), where ``rules`` is a
    list of [subject, subject_is_pattern, audience, agent_id] or None; None when there is no such client. The
    caller checks the agent's status (docs/oauth.md, "Agents without secrets")."""
    global _AUTH_IDENTITY_RULES
    if _AUTH_IDENTITY_RULES is None:
        rules = (f"(SELECT json_agg(json_build_array(r.subject, r.subject_is_pattern, r.audience, r.agent_id)) "
                 f"FROM {_t(FederatedCredential)} r WHERE (r.agent_id = a.id OR r.blueprint_id = a.blueprint_id) "
                 f"AND r.issuer = %s AND r.revoked_at IS NULL), i.id")
        _AUTH_IDENTITY_RULES = _client_statement(rules, f"FROM {_t(AgentIdentity)} i ",
                                                 "WHERE i.client_id = %s LIMIT 1")
    rows = run(_AUTH_IDENTITY_RULES, (issuer, now, now, client_id), read_only=True)
    return rows[0] if rows else None


def _client_statement(first: str, source: str, where: str) -> str:
    """The select list ``authenticate`` reads, from ``source`` (which names the identity ``i``)."""
    perm, grant = _t(Permission), _t(PermissionGrant)
    required = connection.ops.quote_name(Blueprint.required_permissions.through._meta.db_table)
    packaged = connection.ops.quote_name(AccessPackage.permissions.through._meta.db_table)
    package_rows = (f"FROM {_t(Assignment)} s JOIN {packaged} ap ON ap.accesspackage_id = s.package_id "
                    f"JOIN {perm} p ON p.id = ap.permission_id WHERE s.agent_id = a.id AND s.status = 'active' "
                    f"AND s.expires_at > %s AND NOT p.privileged ORDER BY p.name, s.expires_at")
    return (
        f"SELECT {first}, i.client_id, {', '.join(f'a.{c}' for c in AGENT_COLUMNS)}, b.publisher_kind, "
        f"u.username, u.is_active, "
        f"CASE WHEN a.identity_type = 'agent_identity' THEN ARRAY(SELECT p.name FROM {grant} g JOIN {perm} p "
        f"ON p.id = g.permission_id WHERE g.identity_id = i.id AND g.ended_at IS NULL AND NOT p.privileged) "
        f"ELSE ARRAY(SELECT p.name FROM {required} r JOIN {perm} p ON p.id = r.permission_id "
        f"WHERE r.blueprint_id = a.blueprint_id AND NOT p.privileged) END, "
        f"ARRAY(SELECT p.name {package_rows}), ARRAY(SELECT s.expires_at {package_rows}), "
        f"ARRAY(SELECT v.key || '=' || v.value FROM {_t(AttributeValue)} v WHERE v.agent_id = a.id), "
        f"EXISTS(SELECT 1 FROM {_t(AgentUser)} au WHERE au.identity_id = i.id) "
        f"{source}"
        f"JOIN {_t(Agent)} a ON a.id = i.agent_id JOIN {_t(Blueprint)} b ON b.id = a.blueprint_id "
        f"LEFT JOIN {_t(User)} u ON u.id = a.run_as_user_id "
        f"{where}")


TOKEN_COLUMNS = ("token_hash", "agent_id", "client_id", "subject_id", "actor_kind", "grant_type", "scopes",
                  "parent_id", "run_id", "issued_at", "expires_at", "revoked_reason", "audience", "family")
SIGN_IN_COLUMNS = ("at", "agent_id", "client_id", "actor_kind", "subject_id", "ip", "grant_type",
                    "requested_scopes", "granted_scopes", "outcome", "error", "reason", "policies", "resource",
                    "credential_type", "credential_issuer")
_JSON = {"scopes", "requested_scopes", "granted_scopes", "policies"}


def _values(columns, row: dict) -> tuple[str, tuple]:
    marks = ", ".join("%s" for _ in columns)
    return marks, tuple(Jsonb(row[c]) if c in _JSON else row[c] for c in columns)


def record(sign_in: dict, token: dict | None) -> int | None:
    """Write the sign-in row, and the token with it in the same statement (atomic without a transaction); return
    the token's id. Called by ``tokens.issuance_record`` only."""
    global _ISSUE, _SIGN_IN
    if token is None:
        if _SIGN_IN is None:
            marks, _ = _values(SIGN_IN_COLUMNS, dict.fromkeys(SIGN_IN_COLUMNS))
            _SIGN_IN = f"INSERT INTO {_t(SignIn)} ({', '.join(SIGN_IN_COLUMNS)}) VALUES ({marks})"
        run(_SIGN_IN, _values(SIGN_IN_COLUMNS, sign_in)[1])
        return None
    if _ISSUE is None:
        token_marks, _ = _values(TOKEN_COLUMNS, dict.fromkeys(TOKEN_COLUMNS))
        sign_in_marks, _ = _values(SIGN_IN_COLUMNS, dict.fromkeys(SIGN_IN_COLUMNS))
        _ISSUE = (f"WITH t AS (INSERT INTO {_t(AccessToken)} ({', '.join(TOKEN_COLUMNS)}) VALUES ({token_marks}) "
                  f"RETURNING id) INSERT INTO {_t(SignIn)} ({', '.join(SIGN_IN_COLUMNS)}, token_id) "
                  f"SELECT {sign_in_marks}, t.id FROM t RETURNING token_id")
    params = _values(TOKEN_COLUMNS, token)[1] + _values(SIGN_IN_COLUMNS, sign_in)[1]
    return run(_ISSUE, params)[0][0]


LIVE_COLUMNS = ("id", "agent_id", "client_id", "actor_kind", "scopes", "issued_at", "expires_at")


def live(token_hash: str, now: datetime) -> tuple | None:
    """A token row that is unrevoked and unexpired, with what decides whether it is still active: its agent's
    status, expiry, identity type and run-as user's state, and its subject's name and state."""
    global _LIVE
    if _LIVE is None:
        _LIVE = (f"SELECT {', '.join(f't.{c}' for c in LIVE_COLUMNS)}, a.status, a.expires_at, a.identity_type, "
                 f"r.is_active, s.username, s.is_active, t.last_used_at FROM {_t(AccessToken)} t "
                 f"LEFT JOIN {_t(Agent)} a ON a.id = t.agent_id LEFT JOIN {_t(User)} r ON r.id = a.run_as_user_id "
                 f"LEFT JOIN {_t(User)} s ON s.id = t.subject_id "
                 f"WHERE t.token_hash = %s AND t.revoked_at IS NULL AND t.expires_at > %s LIMIT 1")
    rows = run(_LIVE, (token_hash, now), read_only=True)
    return rows[0] if rows else None


_USED = None


def mark_used(token_id: int, now: datetime, stale_before: datetime) -> None:
    """Note a token's use (docs/design.md, "Usage"): one UPDATE, which leaves a token marked since ``stale_before``
    alone (so two requests racing in the same minute write once)."""
    global _USED
    if _USED is None:
        _USED = (f"UPDATE {_t(AccessToken)} SET last_used_at = %s WHERE id = %s "
                 f"AND (last_used_at IS NULL OR last_used_at < %s)")
    run(_USED, (now, token_id, stale_before))


_RS = None


def resource_server(secret_hash: str) -> tuple | None:
    """(id, client id) of the unrevoked resource server with this secret, or None."""
    global _RS
    if _RS is None:
        _RS = (f"SELECT id, client_id FROM {_t(ResourceServer)} WHERE secret_hash = %s AND revoked_at IS NULL "
               f"LIMIT 1")
    rows = run(_RS, (secret_hash,), read_only=True)
    return rows[0] if rows else None
