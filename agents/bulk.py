"""Bulk provisioning of agents from a CSV or JSON file (R9): all-or-nothing, row-numbered errors, dry run.

A bulk file goes through three steps, each of which only reads until the last:

1. ``parse_bulk_file`` reads the file as a stream of ``RawRow``s (CSV and JSON normalised to the same shape);
2. ``build_specs`` resolves blueprint names and usernames in a constant number of queries and turns the rows
   into ``registry.AgentSpec``s;
3. ``provision_file`` hands the specs to ``registry.agents_provision`` — the one write path for agents — which
   checks every business rule (R1–R10) for every row before writing anything, exactly as for one agent.

Every problem is ``(row, column, message)``. Row numbers count **data rows**: 1 is the first agent in the
file (the line after the CSV header, the first object of the JSON list); blank CSV lines are skipped and not
counted. Problems that concern the whole file (empty file, wrong header, invalid JSON) have row ``None``.

Uploads from the browser run as a ``BulkJob`` on a Celery worker (``bulk_job_start`` → ``bulk_job_run``).
The new client secrets are the only sensitive output: the worker keeps them in ``BulkJob.secrets_ciphertext``
encrypted with a Fernet key that only the requester's session holds, until they download them once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone

from agents import registry
from agents.choices import IdentityType
from agents.models import Blueprint, BulkJob
from agents.registry import AgentSpec, Provisioned, ProvisioningError
from portal import audit, celery, csvexport, rbac
from portal.models import User, Workspace

logger = logging.getLogger(__name__)

COLUMNS = ("blueprint", "name", "identity_type", "scope", "sponsors", "owners", "attributes", "expires_at",
           "public_jwk", "federated_issuer", "federated_subject", "federated_audience")
#: Optional credentials without secrets (R28): a public key (a JWK as JSON, or a PEM) and/or one federated
#: credential (issuer, subject and audience together); checked while reading, added with the agent.
CREDENTIAL_COLUMNS = COLUMNS[8:]
#: ``attributes`` and ``expires_at`` may be left out of the header (and out of JSON objects): both are optional.
REQUIRED_COLUMNS = COLUMNS[:6]
SECRETS_HEADER = ("name", "client_id", "client_secret")
FORMATS = ("csv", "json")
#: Pseudo-column for problems that concern a whole row rather than one of its cells.
ROW = "(row)"
FILE = "file"
EXPIRY_EXAMPLE = "2027-01-31T00:00:00Z"

Problem = tuple[int | None, str, str]
Progress = Callable[[int, int], None]


@dataclass
class RawRow:
    """One data row as read from the file, CSV and JSON alike; nothing resolved against the database yet.

    ``problems`` holds (column, message) pairs found while reading (e.g. an ``attributes`` cell without ``=``);
    ``unreadable`` says the row could not be read at all (a JSON item that is not an object): nothing more is said.
    """

    row: int
    blueprint: str = ""
    name: str = ""
    identity_type: str = ""
    scope: str = ""
    sponsors: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    expires_at: str = ""
    public_jwk: dict | None = None
    federated: dict[str, str] = field(default_factory=dict)  # issuer, subject, audience
    problems: list[tuple[str, str]] = field(default_factory=list)
    unreadable: bool = False


@dataclass
class BulkResult:
    """What ``provision_file`` did: the new agents (empty on a dry run) and how many rows were valid."""

    created: list[Provisioned]
    problems: list[Problem]
    dry_run: bool
    total: int = 0


def _file_error(message: str) -> ProvisioningError:
    return ProvisioningError([(None, FILE, message)])


def _too_many_rows() -> ProvisioningError:
    limit = settings.BULK_MAX_ROWS
    return _file_error(f"a bulk file creates at most {limit} agents (BULK_MAX_ROWS); this one has more. "
                       f"Split it into files of {limit} rows or fewer.")


# --- 1. reading ------------------------------------------------------------------------------------------


def detect_format(filename: str, head: str = "") -> str:
    """``csv`` or ``json``: from the extension, else from the first non-blank character of the content."""
    lowered = (filename or "").lower()
    for fmt in FORMATS:
        if lowered.endswith(f".{fmt}"):
            return fmt
    return "json" if head.lstrip("\ufeff \t\r\n")[:1] in ("[", "{") else "csv"


def _text_lines(source: str | bytes | IO) -> Iterator[str]:
    """Lines of text (line endings kept) from a str, bytes, or a text or binary stream; UTF-8, BOM or not."""
    if isinstance(source, bytes):
        source = source.decode("utf-8-sig")
    if isinstance(source, str):
        yield from io.StringIO(source, newline="")
        return
    if isinstance(source.read(0), bytes):
        wrapper = io.TextIOWrapper(source, encoding="utf-8-sig", newline="")
        try:
            for line in wrapper:  # not ``yield from``: closing this generator would close the caller's stream
                yield line
        finally:
            wrapper.detach()  # leave the caller's stream open
        return
    for line in source:
        yield line


def parse_bulk_file(stream_or_text: str | bytes | IO, filename: str) -> Iterator[RawRow]:
    """Yield the file's data rows as ``RawRow``s, reading CSV line by line (JSON is loaded whole).

    The format comes from the extension (``.csv``/``.json``), else from the content. A UTF-8 byte-order mark is
    accepted. Problems with the whole file (empty, unreadable, wrong header) raise ``ProvisioningError`` with
    row ``None``; problems with one cell are attached to its row.
    """
    lines = _text_lines(stream_or_text)
    head: list[str] = []
    try:
        for line in lines:
            head.append(line)
            if line.strip("\ufeff \t\r\n"):
                break
    except UnicodeDecodeError as error:
        raise _file_error(f"the file is not UTF-8 text ({error.reason})") from None
    if head:
        head[0] = head[0].lstrip("\ufeff")
    if not "".join(head).strip():
        raise _file_error(f"the file is empty; a CSV file starts with the header {','.join(COLUMNS)}, "
                          f"a JSON file is a list of objects with those keys")
    everything = itertools.chain(head, lines)
    try:
        if detect_format(filename, "".join(head)) == "json":
            yield from _parse_json(everything)
        else:
            yield from _parse_csv(everything)
    finally:
        lines.close()  # a file refused half-way is let go now, while the caller's stream is still open


def _parse_csv(lines: Iterable[str]) -> Iterator[RawRow]:
    reader = csv.reader(lines)
    row = 0
    try:
        header = next((values for values in reader if any(v.strip() for v in values)), None)
        if header is None:
            raise _file_error("the file is empty")
        columns = [name.strip().lower() for name in header]
        _check_header(columns)
        for values in reader:
            if not any(v.strip() for v in values):
                continue  # blank lines are neither agents nor counted
            row += 1
            if row > settings.BULK_MAX_ROWS:
                raise _too_many_rows()
            raw = RawRow(row=row)
            extra = [v for v in values[len(columns):] if v.strip()]
            if extra:
                raw.problems.append((ROW, f"{len(values) - len(columns)} value(s) more than the header's "
                                          f"{len(columns)} columns (quote cells that contain commas)"))
            cells = {column: value.strip() for column, value in zip(columns, values, strict=False)}
            _fill_from_csv(raw, cells)
            yield raw
    except csv.Error as error:
        raise ProvisioningError([(row + 1, ROW, f"the CSV cannot be read: {error}")]) from None
    except UnicodeDecodeError as error:
        raise ProvisioningError([(row + 1, ROW, f"the file is not UTF-8 text ({error.reason})")]) from None
    if row == 0:
        raise _file_error("the file has a header but no agents")


def _check_header(columns: list[str]) -> None:
    unknown = [c for c in columns if c not in COLUMNS]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    repeated = sorted({c for c in columns if columns.count(c) > 1 and c in COLUMNS})
    if not (unknown or missing or repeated):
        return
    found = [f"unknown column(s) {', '.join(repr(c) for c in unknown)}" if unknown else "",
             f"missing column(s) {', '.join(repr(c) for c in missing)}" if missing else "",
             f"repeated column(s) {', '.join(repr(c) for c in repeated)}" if repeated else ""]
    raise _file_error(f"the header must be {','.join(COLUMNS[:8])} ({'; '.join(f for f in found if f)}), "
                      f"optionally with {','.join(CREDENTIAL_COLUMNS)}")


def _usernames(cell: str) -> list[str]:
    """A list of people as the set-up wizard takes it: usernames separated by ``;`` (the file's own separator, and
    what exports write) or ``,`` (in a quoted cell), whichever the person typed."""
    return [name.strip() for name in cell.replace(",", ";").split(";") if name.strip()]


def _fill_from_csv(raw: RawRow, cells: dict[str, str]) -> None:
    raw.blueprint, raw.name = cells.get("blueprint", ""), cells.get("name", "")
    raw.identity_type, raw.scope = cells.get("identity_type", ""), cells.get("scope", "")
    raw.sponsors, raw.owners = _usernames(cells.get("sponsors", "")), _usernames(cells.get("owners", ""))
    raw.expires_at = cells.get("expires_at", "")
    _fill_credentials(raw, {c: cells.get(c, "") for c in CREDENTIAL_COLUMNS})
    for pair in cells.get("attributes", "").split(";"):
        if not pair.strip():
            continue
        key, equals, value = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raw.problems.append(("attributes", f"'{pair.strip()}' is not key=value"))
        elif key in raw.attributes:
            raw.problems.append(("attributes", f"'{key}' is given twice"))
        else:
            raw.attributes[key] = value.strip()


def _parse_json(lines: Iterable[str]) -> Iterator[RawRow]:
    try:
        data = json.loads("".join(lines))
    except json.JSONDecodeError as error:
        raise _file_error(f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}") from None
    except UnicodeDecodeError as error:
        raise _file_error(f"the file is not UTF-8 text ({error.reason})") from None
    except RecursionError:  # "[[[[…" thousands deep: the decoder runs out of stack
        raise _file_error("not valid JSON for a bulk file: it is nested too deeply (a bulk file is a list of "
                          "flat objects)") from None
    if not isinstance(data, list):
        raise _file_error("a JSON bulk file is a list of objects, one per agent")
    if not data:
        raise _file_error("the file lists no agents")
    if len(data) > settings.BULK_MAX_ROWS:
        raise _too_many_rows()
    for row, item in enumerate(data, start=1):
        raw = RawRow(row=row)
        if not isinstance(item, dict):
            raw.unreadable = True
            raw.problems.append((ROW, "each agent is a JSON object with the keys " + ", ".join(COLUMNS)))
        else:
            _fill_from_json(raw, item)
        yield raw


def _fill_from_json(raw: RawRow, item: dict[str, Any]) -> None:
    for key in item:
        if key not in COLUMNS:
            raw.problems.append((str(key), f"is not a known key; the keys are {', '.join(COLUMNS)}"))
    for key in REQUIRED_COLUMNS:
        if key not in item:
            raw.problems.append((key, "is missing"))
    for key in ("blueprint", "name", "identity_type", "scope", "expires_at"):
        value = item.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            setattr(raw, key, value.strip())
        else:
            raw.problems.append((key, "must be a string"))
    for key in ("sponsors", "owners"):
        value = item.get(key)
        if value is None:
            continue
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            setattr(raw, key, [v.strip() for v in value if v.strip()])
        else:
            raw.problems.append((key, "must be a list of usernames"))
    credentials = {c: item.get(c) for c in CREDENTIAL_COLUMNS}
    for key in CREDENTIAL_COLUMNS[1:]:
        if credentials[key] is not None and not isinstance(credentials[key], str):
            raw.problems.append((key, "must be a string"))
            credentials[key] = ""
    _fill_credentials(raw, credentials)
    attributes = item.get("attributes")
    if attributes is None:
        return
    if not isinstance(attributes, dict):
        raw.problems.append(("attributes", "must be an object of key: value"))
        return
    for key, value in attributes.items():
        if isinstance(value, dict | list):
            raw.problems.append(("attributes", f"the value of '{key}' must be a string or a number"))
        else:
            raw.attributes[str(key)] = value if isinstance(value, str) else json.dumps(value)


def _fill_credentials(raw: RawRow, cells: dict[str, Any]) -> None:
    """The optional key and federated credential of a row, checked as the services will (nothing is written)."""
    from agents import trust

    key = cells.get("public_jwk")
    if key:
        try:
            raw.public_jwk = trust.parse_public_key(key if isinstance(key, str) else json.dumps(key))
        except ValidationError as error:
            raw.problems.append(("public_jwk", " ".join(error.messages)))
    rule = {name: (cells.get(f"federated_{name}") or "").strip() for name in ("issuer", "subject", "audience")}
    if any(rule.values()):
        missing = [f"federated_{name}" for name, value in rule.items() if not value]
        if missing:
            raw.problems.append((missing[0], "a federated credential needs federated_issuer, federated_subject "
                                             "and federated_audience"))
            return
        try:
            trust.check_rule(rule["issuer"], rule["subject"], rule["audience"], False, "")
        except ValidationError as error:
            for field_name, messages in error.message_dict.items():
                raw.problems.append((f"federated_{field_name}", " ".join(messages)))
            return
        raw.federated = rule


# --- 2. resolving ----------------------------------------------------------------------------------------


def _split_blueprint(value: str) -> tuple[str, int | None, str]:
    """``Name`` or ``Name@version`` → (name, version or None, the name as written whole)."""
    name, at, version = value.rpartition("@")
    digits = version[1:] if version[:1] in ("v", "V") else version
    if at and name and digits.isdigit():
        return name.strip(), int(digits), value
    return value, None, value


def _split_identity_type(value: str) -> tuple[str, str | None]:
    """``agent_identity`` → (type, None); ``user_account:<username>`` → (type, username)."""
    kind, colon, username = value.partition(":")
    kind = kind.strip().lower()
    if kind == IdentityType.USER_ACCOUNT and colon:
        return kind, username.strip()
    return kind, None


def _resolve_blueprint(name: str, version: int | None, versions: list[Blueprint]) -> Blueprint | str:
    """The blueprint a cell names, or the message saying why there is none."""
    if not versions:
        return f"no blueprint is called '{name}'"
    if version is not None:
        for blueprint in versions:
            if blueprint.version == version:
                return blueprint
        known = ", ".join(str(b.version) for b in sorted(versions, key=lambda b: b.version))
        return f"{name} has no version {version} (versions: {known})"
    complete = [b for b in versions if b.is_complete]
    if not complete:
        return f"no version of {name} is complete yet: an owner must map its skills first"
    return max(complete, key=lambda b: b.version)


def _parse_expiry(value: str) -> datetime | str:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return f"'{value}' is not an ISO 8601 date and time (e.g. {EXPIRY_EXAMPLE})"
    if timezone.is_naive(moment):
        return f"'{value}' has no time zone; add one (e.g. {EXPIRY_EXAMPLE} or +02:00)"
    return moment


def build_specs(*, workspace: Workspace, rows: Iterable[RawRow]) -> tuple[list[AgentSpec], list[Problem]]:
    """Resolve the rows' blueprints and people and return (specs, problems).

    ``problems`` are (row, column, message) with row 1 = the first data row of the file (not the header).
    Blueprints are fetched in one query (``Name`` takes the latest complete version, ``Name@3`` version 3) and
    people in one more (``username__in``), whatever the number of rows.

    ``specs`` holds one spec per row whose blueprint resolved, with ``row`` set so the registry's own errors
    carry the file's row numbers; a row with problems gets a best-effort spec (unknown people left out) only
    so that its *other* cells can still be checked. Provision the specs only when ``problems`` is empty —
    ``provision_file`` does exactly that. Business rules (names, scopes, R1–R10) are the registry's; the
    ``workspace`` is where the agents will live (names are checked against it by the registry).
    """
    problems: list[Problem] = []
    try:
        raws = list(rows)
    except ProvisioningError as error:  # the file as a whole could not be read
        return [], list(error.problems)

    blueprint_names, usernames = set(), set()
    for raw in raws:
        if raw.blueprint:
            name, _version, whole = _split_blueprint(raw.blueprint)
            blueprint_names |= {name, whole}
        _kind, run_as = _split_identity_type(raw.identity_type)
        usernames |= set(raw.sponsors) | set(raw.owners) | ({run_as} if run_as else set())
    versions_of: dict[str, list[Blueprint]] = {}
    if blueprint_names:
        for blueprint in Blueprint.objects.filter(name__in=blueprint_names).defer("manifest"):
            versions_of.setdefault(blueprint.name, []).append(blueprint)
    users = {u.username: u for u in User.objects.filter(username__in=usernames)} if usernames else {}
    resolved_blueprints: dict[str, Blueprint | str] = {}

    specs: list[AgentSpec] = []
    for raw in raws:
        if raw.unreadable:
            problems += [(raw.row, column, message) for column, message in raw.problems]
            continue
        found: list[tuple[str, str]] = list(raw.problems)
        blueprint: Blueprint | None = None
        if not raw.blueprint:
            found.append(("blueprint", "a blueprint name is required (Name or Name@version)"))
        else:
            if raw.blueprint not in resolved_blueprints:
                name, version, whole = _split_blueprint(raw.blueprint)
                if version is not None and whole in versions_of:  # a name that itself contains "@<digits>"
                    name, version = whole, None
                resolved_blueprints[raw.blueprint] = _resolve_blueprint(name, version, versions_of.get(name, []))
            outcome = resolved_blueprints[raw.blueprint]
            if isinstance(outcome, str):
                found.append(("blueprint", outcome))
            else:
                blueprint = outcome

        kind, run_as_name = _split_identity_type(raw.identity_type)
        run_as_user = None
        if kind == IdentityType.USER_ACCOUNT:
            if not run_as_name:
                found.append(("identity_type", "name the account the agent runs as: user_account:<username>"))
            elif run_as_name not in users:
                found.append(("identity_type", f"no user is called '{run_as_name}'"))
            else:
                run_as_user = users[run_as_name]
        elif kind != IdentityType.AGENT_IDENTITY:
            found.append(("identity_type", f"'{raw.identity_type}' is not agent_identity or "
                                           f"user_account:<username>"))

        people: dict[str, list[User]] = {}
        for column in ("sponsors", "owners"):
            people[column] = []
            for username in getattr(raw, column):
                if username in users:
                    people[column].append(users[username])
                else:
                    found.append((column, f"no user is called '{username}'"))

        expires_at = None
        if raw.expires_at:
            parsed = _parse_expiry(raw.expires_at)
            if isinstance(parsed, str):
                found.append(("expires_at", parsed))
            else:
                expires_at = parsed

        problems += [(raw.row, column, message) for column, message in found]
        if blueprint is not None:
            specs.append(AgentSpec(
                blueprint=blueprint, name=raw.name, identity_type=kind, scope=raw.scope.strip().lower(),
                sponsors=people["sponsors"], owners=people["owners"], run_as_user=run_as_user,
                attributes=raw.attributes, expires_at=expires_at, row=raw.row,
            ))
    return specs, problems


def _column_order(problem: Problem) -> tuple[int, int]:
    row, column, _message = problem
    if column in COLUMNS:
        return (row or 0, COLUMNS.index(column))
    return (row or 0, -1 if column in (ROW, FILE) else len(COLUMNS))  # row-wide first, unknown keys last


def merge_problems(read: list[Problem], rules: list[Problem]) -> list[Problem]:
    """Reading problems plus the registry's, minus the registry's on a cell that already has a reading problem
    (an unknown sponsor would otherwise also read "at least one sponsor is required"), in row and column order."""
    taken = {(row, column) for row, column, _ in read}
    merged = read + [p for p in rules if (p[0], p[1]) not in taken]
    return sorted(merged, key=_column_order)


# --- 3. provisioning -------------------------------------------------------------------------------------


def provision_file(*, actor: User | None, workspace: Workspace, stream: str | bytes | IO, filename: str,
                   dry_run: bool = False, progress: Progress | None = None) -> BulkResult:
    """R9: create every agent of a bulk file, or none. Raises ``ProvisioningError`` listing every problem.

    ``actor`` None is the system (the ``provision_agents`` command); otherwise the registry checks per row that
    the actor may set agents up at that scope (R10). ``progress(done, total)`` is called once with ``done=0``
    before writing and after each batch the registry writes.
    """
    raws: list[RawRow] = []

    def kept(rows: Iterable[RawRow]) -> Iterator[RawRow]:
        for raw in rows:
            raws.append(raw)
            yield raw

    specs, problems = build_specs(workspace=workspace, rows=kept(parse_bulk_file(stream, filename)))
    if problems:
        rule_problems: list[Problem] = []
        if specs:  # also report what the registry would refuse in the other rows and cells, all at once
            try:
                registry.agents_provision(actor=actor, workspace=workspace, specs=specs, dry_run=True)
            except ProvisioningError as error:
                rule_problems = error.problems
        raise ProvisioningError(merge_problems(problems, rule_problems))
    total = len(specs)
    if progress is not None and not dry_run:
        progress(0, total)
    credentials_of = {raw.row: raw for raw in raws if raw.public_jwk or raw.federated}
    with transaction.atomic() if credentials_of else contextlib.nullcontext():
        created = registry.agents_provision(
            actor=actor, workspace=workspace, specs=specs, dry_run=dry_run,
            progress=(lambda done: progress(done, total)) if progress is not None else None,
        )
        if credentials_of:
            _add_credentials(actor, specs, created, credentials_of)
    return BulkResult(created=created, problems=[], dry_run=dry_run, total=total)


def _add_credentials(actor: User | None, specs: list[AgentSpec], created: list[Provisioned],
                     credentials_of: dict[int, RawRow]) -> None:
    """The rows' keys and federated credentials, through their services, in the provisioning's transaction."""
    from django.core.exceptions import PermissionDenied

    from agents import trust

    for spec, provisioned in zip(specs, created, strict=False):
        raw = credentials_of.get(spec.row)
        if raw is None:
            continue
        try:
            if raw.public_jwk:
                trust.key_credential_add(actor=actor, agent=provisioned.agent, jwk=raw.public_jwk)
            if raw.federated:
                trust.federated_credential_add(actor=actor, agent=provisioned.agent, **raw.federated)
        except (ValidationError, PermissionDenied) as error:
            messages = error.messages if isinstance(error, ValidationError) else [str(error)]
            column = "public_jwk" if raw.public_jwk else "federated_issuer"
            raise ProvisioningError([(spec.row, column, " ".join(messages))]) from None


# --- secrets ---------------------------------------------------------------------------------------------


def secrets_csv(created: Iterable[Provisioned]) -> str:
    """``name,client_id,client_secret`` for the new agent identities (run-as agents have no secret), through the
    portal's one CSV writer: an agent name may start like a spreadsheet formula (``-``, ``+``, ``@``)."""
    rows = ((p.agent.name, p.client_id, p.client_secret) for p in created if p.client_secret)
    return csvexport.csv_text([SECRETS_HEADER, *rows], lineterminator="\n")


def encrypt_secrets(text: str, key: bytes | None = None) -> tuple[bytes, bytes]:
    """(key, ciphertext) with Fernet (AES-128-CBC + HMAC-SHA-256); a new key unless one is given."""
    key = key or Fernet.generate_key()
    return key, Fernet(key).encrypt(text.encode())


def decrypt_secrets(key: bytes, ciphertext: bytes) -> str:
    return Fernet(key).decrypt(bytes(ciphertext)).decode()


# --- bulk jobs (upload → Celery worker → one download) ---------------------------------------------------


def _as_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def bulk_job_start(*, actor: User, workspace: Workspace, upload_name: str, content: str) -> tuple[BulkJob, bytes]:
    """Validate an uploaded bulk file completely (a dry run), then queue it for a worker (R9).

    Raises ``PermissionDenied`` unless the actor is a member of the workspace, and ``ProvisioningError`` (with
    every row-numbered problem, nothing stored) when the file would be refused. Returns the job and the
    Fernet key that will encrypt the new secrets: the caller keeps it in the requester's session only — it is
    never stored in the database. The key reaches the worker as a task argument (see ``_enqueue``).
    """
    rbac.require(actor is not None and rbac.has_workspace_perm(actor, workspace, rbac.VIEW_WORKSPACE),
                 "Only members of this workspace can upload agents to it.")
    content = content.lstrip("\ufeff")
    result = provision_file(actor=actor, workspace=workspace, stream=content, filename=upload_name, dry_run=True)
    key = Fernet.generate_key()
    with transaction.atomic():
        job = BulkJob.objects.create(
            workspace=workspace, requested_by=actor, filename=upload_name[:255],
            file_format=detect_format(upload_name, content[:100]), payload=content, total=result.total,
            status=BulkJob.Status.QUEUED,
        )
        audit.record(actor=actor, action="agent.bulk_upload", target=job, workspace=workspace,
                     after={"filename": job.filename, "format": job.file_format, "rows": job.total})
        transaction.on_commit(lambda: _enqueue(job.pk, key))
    return job, key


def _enqueue(job_id: int, key: bytes) -> None:
    """Send the job to a worker with its key. The key travels in the broker message (internal Redis, deleted
    once the worker acknowledges it; no result backend); ``argsrepr`` keeps it out of worker logs and
    monitoring events."""
    celery.enqueue("agents.run_bulk_job", job_id, key.decode(), argsrepr=f"({job_id}, '[redacted]')")


class _ProgressWriter:
    """Writes ``BulkJob.done`` where other connections can see it while the job's transaction is still open.

    Provisioning is one all-or-nothing transaction, so an update on the same connection would stay invisible
    until commit. On PostgreSQL, when this is the outermost transaction (a worker), progress goes through a
    second, autocommitting connection that touches only the job row — which the provisioning transaction
    never locks before it has finished. Elsewhere (SQLite allows one writer; inside a caller's transaction the
    job row may be locked) it falls back to the same connection: correct, only not visible until commit.
    Progress is best effort: a failed write never fails the job.
    """

    def __init__(self, job_id: int):
        self.job_id = job_id
        self.side = None
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            self.side = connections.create_connection(connection.alias)

    def __call__(self, done: int, total: int) -> None:
        if self.side is None:
            BulkJob.objects.filter(pk=self.job_id).update(done=done)
            return
        try:
            with self.side.cursor() as cursor:
                cursor.execute("SET lock_timeout = '2s'")
                table, column = (self.side.ops.quote_name(n) for n in (BulkJob._meta.db_table, "done"))
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE id = %s", [done, self.job_id])
        except Exception:  # progress must never break provisioning
            logger.warning("bulk job %s: could not record progress", self.job_id, exc_info=True)

    def close(self) -> None:
        if self.side is not None:
            self.side.close()


def _finish(job: BulkJob, actor: User | None, **changes) -> BulkJob:
    """Record the job's outcome and its audit event in one transaction (inside the caller's, if any)."""
    with transaction.atomic():
        for name, value in changes.items():
            setattr(job, name, value)
        job.finished_at = timezone.now()
        job.save(update_fields=[*changes, "finished_at"])
        audit.record(actor=actor, action="agent.bulk_job_finish", target=job, workspace=job.workspace,
                     after={"status": job.status, "created": job.done if job.status == BulkJob.Status.SUCCEEDED
                            else 0, "problems": len(job.problems), "error": job.error[:200]})
    return job


def bulk_job_run(job_id: int, key: bytes | str) -> BulkJob:
    """Run a queued bulk job (what the Celery task calls): idempotent, all-or-nothing, with progress.

    Only a queued job is claimed (one conditional UPDATE), so a second delivery of the same message, or a
    second worker, does nothing. The file is validated again — the world may have changed since the upload —
    and provisioned as the requester. On success the new secrets are stored only encrypted with ``key``;
    on refusal the row-numbered problems are stored; on a crash the error. Never a secret in clear anywhere.
    """
    claimed = BulkJob.objects.filter(pk=job_id, status=BulkJob.Status.QUEUED).update(
        status=BulkJob.Status.RUNNING, done=0)
    job = BulkJob.objects.select_related("workspace", "requested_by").get(pk=job_id)
    if not claimed:
        return job
    actor = job.requested_by
    if actor is None or not actor.is_active:
        return _finish(job, None, status=BulkJob.Status.FAILED,
                       error="The person who uploaded the file no longer exists or is deactivated.")
    try:
        fernet_key = _as_bytes(key)
        Fernet(fernet_key)  # a bad key fails the job before anything is created
    except (ValueError, TypeError):
        return _finish(job, actor, status=BulkJob.Status.FAILED, error="The job's encryption key is invalid.")

    progress = _ProgressWriter(job.pk)
    try:
        with transaction.atomic():
            result = provision_file(actor=actor, workspace=job.workspace, stream=job.payload,
                                    filename=job.filename, progress=progress)
            _key, ciphertext = encrypt_secrets(secrets_csv(result.created), fernet_key)
            return _finish(job, actor, status=BulkJob.Status.SUCCEEDED, done=len(result.created),
                           total=result.total, secrets_ciphertext=ciphertext)
    except ProvisioningError as refusal:
        problems = [[row, column, message] for row, column, message in refusal.problems]  # as ProvisioningError
        return _finish(job, actor, status=BulkJob.Status.FAILED, done=0, problems=problems,
                       error=f"{len(problems)} problem(s); nothing was created.")
    except Exception as crash:  # recorded, never lost; tracebacks carry no local variables, so no secrets
        logger.exception("bulk job %s crashed", job_id)
        return _finish(job, actor, status=BulkJob.Status.FAILED, done=0,
                       error=f"{type(crash).__name__}: {crash}\n{traceback.format_exc(limit=5)}"[:4000])
    finally:
        progress.close()


def bulk_job_secrets_download(*, actor: User, job: BulkJob, key: bytes | str) -> str:
    """The new secrets as ``name,client_id,client_secret`` CSV: for the requester only, and only once.

    The ciphertext is erased as the CSV is handed over (in the same transaction as the audit event), so the
    secrets exist nowhere on the server afterwards; lost ones are replaced by rotating the credential.
    """
    with transaction.atomic():
        job = BulkJob.objects.select_for_update().select_related("workspace").get(pk=job.pk)
        rbac.require(actor is not None and actor.is_active and actor.pk == job.requested_by_id,
                     "Only the person who uploaded the file can download its secrets.")
        if job.secrets_downloaded_at is not None:
            raise ValidationError("These secrets were already downloaded; rotate a credential to get a new one.",
                                  code="already_downloaded")
        if job.status != BulkJob.Status.SUCCEEDED or job.secrets_ciphertext is None:
            raise ValidationError("This job has no secrets to download.", code="no_secrets")
        try:
            text = decrypt_secrets(_as_bytes(key), job.secrets_ciphertext)
        except (InvalidToken, ValueError, TypeError):
            raise ValidationError("The key for these secrets is missing or wrong (it lives in the session that "
                                  "uploaded the file).", code="bad_key") from None
        job.secrets_ciphertext, job.secrets_downloaded_at = None, timezone.now()
        job.save(update_fields=["secrets_ciphertext", "secrets_downloaded_at"])
        audit.record(actor=actor, action="agent.bulk_secrets_download", target=job, workspace=job.workspace,
                     after={"identities": max(text.count("\n") - 1, 0)})
    return text

