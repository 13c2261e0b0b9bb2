"""R9: agents in bulk from CSV/JSON — all-or-nothing, row-numbered errors, dry run, the same rules as one by one;
the ``provision_agents`` command, the Celery bulk job, and the once-only secrets download."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from agents import bulk, credentials, registry
from agents.models import (
    Agent,
    AgentIdentity,
    AgentUser,
    AgentUserObjectPermission,
    AttributeValue,
    BulkJob,
    Credential,
    PermissionGrant,
    Sponsorship,
)
from agents.registry import ProvisioningError
from portal.models import AuditEvent, User
from tests.factories import make_blueprint

pytestmark = pytest.mark.django_db

HEADER = "blueprint,name,identity_type,scope,sponsors,owners,attributes,expires_at"
GOOD_ROWS = [
    "Triage,triage-1,agent_identity,workspace,owner;owner_b,owner,tier=gold;team=soc,2030-01-31T00:00:00Z",
    "Triage@1,triage-2,agent_identity,user,contributor,owner_b,,",
    "PartnerBot,partner-1,user_account:contributor,user,owner,owner,,2030-06-01T12:00:00+02:00",
]


def _csv(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


@pytest.fixture
def blueprints(world):
    return {"triage": make_blueprint("Triage"),
            "partner": make_blueprint("PartnerBot", publisher_kind="partner", permissions=("User.Read.All",))}


def _problems(excinfo) -> list[tuple]:
    return [tuple(p) for p in excinfo.value.problems]


def _provision(world, text: str, filename: str = "agents.csv", actor=None, **kwargs) -> bulk.BulkResult:
    return bulk.provision_file(actor=actor or world.owner, workspace=world.alpha, stream=text, filename=filename,
                               **kwargs)


# --- files that provision ---------------------------------------------------------------------------------


def test_r9_csv_creates_agents_with_identities_permissions_people_attributes_and_expiry(world, blueprints):
    result = _provision(world, _csv(*GOOD_ROWS))

    assert [p.agent.name for p in result.created] == ["triage-1", "triage-2", "partner-1"]
    triage = Agent.objects.get(name="triage-1")
    assert (triage.workspace, triage.blueprint, triage.scope, triage.identity_type, triage.status) == (
        world.alpha, blueprints["triage"], "workspace", "agent_identity", "active")
    assert triage.expires_at == datetime(2030, 1, 31, tzinfo=UTC)
    assert triage.created_by == world.owner
    assert sorted(PermissionGrant.objects.filter(identity__agent=triage).values_list("permission__name", flat=True)
                  ) == ["Policy.Read.All", "User.Read.All"]  # R3
    assert AgentUser.objects.filter(identity__agent=triage).exists()  # R6
    people = registry.people_of(triage)
    assert [u.username for u in people["sponsor_agent"]] == ["owner", "owner_b"]
    assert [u.username for u in people["own_agent"]] == ["owner"]
    assert dict(AttributeValue.objects.filter(agent=triage).values_list("key", "value")) == {"tier": "gold",
                                                                                             "team": "soc"}
    second = Agent.objects.get(name="triage-2")
    assert second.scope == "user" and second.expires_at is None
    assert [u.username for u in registry.people_of(second)["sponsor_agent"]] == ["contributor"]
    assert Agent.objects.get(name="partner-1").expires_at == datetime(2030, 6, 1, 10, 0, tzinfo=UTC)
    assert AuditEvent.objects.filter(action="agent.create", actor=world.owner).count() == 3


def test_r9_json_creates_the_same_agents(world, blueprints):
    text = json.dumps([
        {"blueprint": "Triage", "name": "json-1", "identity_type": "agent_identity", "scope": "workspace",
         "sponsors": ["owner", "owner_b"], "owners": ["owner"], "attributes": {"tier": "gold", "level": 3},
         "expires_at": "2030-01-31T00:00:00Z"},
        {"blueprint": "PartnerBot", "name": "json-2", "identity_type": "user_account:owner_b", "scope": "user",
         "sponsors": ["owner"], "owners": ["owner"]},
    ])
    result = _provision(world, text, filename="agents.json")

    assert [p.agent.name for p in result.created] == ["json-1", "json-2"]
    first = Agent.objects.get(name="json-1")
    assert dict(AttributeValue.objects.filter(agent=first).values_list("key", "value")) == {"tier": "gold",
                                                                                            "level": "3"}
    assert first.expires_at == datetime(2030, 1, 31, tzinfo=UTC)
    assert PermissionGrant.objects.filter(identity__agent=first).count() == 2
    assert [u.username for u in registry.people_of(first)["sponsor_agent"]] == ["owner", "owner_b"]
    assert Agent.objects.get(name="json-2").run_as_user == world.owner_b


def test_r9_the_format_comes_from_the_content_when_the_name_has_no_extension_and_a_bom_is_accepted(world,
                                                                                                  blueprints):
    row = {"blueprint": "Triage", "name": "sniffed-json", "identity_type": "agent_identity", "scope": "user",
           "sponsors": ["owner"], "owners": ["owner"]}
    assert len(_provision(world, "\ufeff  " + json.dumps([row]), filename="upload").created) == 1
    bom_csv = ("\ufeff" + _csv("Triage,sniffed-csv,agent_identity,user,owner,owner,,")).encode()
    assert [p.agent.name for p in _provision(world, io.BytesIO(bom_csv), filename="upload").created] == [
        "sniffed-csv"]


def test_r9_user_account_rows_run_as_that_user_and_have_no_credentials(world, blueprints):
    result = _provision(world, _csv("PartnerBot,runs-as,user_account:contributor,user,owner,owner,,"))

    (provisioned,) = result.created
    agent = provisioned.agent
    assert (agent.identity_type, agent.run_as_user) == ("user_account", world.contributor)  # R1
    assert provisioned.client_id == "" and provisioned.client_secret == ""
    assert not AgentIdentity.objects.filter(agent=agent).exists()
    assert not Credential.objects.filter(identity__agent=agent).exists()
    assert bulk.secrets_csv(result.created) == "name,client_id,client_secret\n"


def test_r9_a_blueprint_name_takes_its_latest_complete_version_and_name_at_version_pins_one(world, blueprints):
    make_blueprint("Triage", version=2)
    make_blueprint("Triage", version=3, complete=False)
    _provision(world, _csv("Triage,latest,agent_identity,user,owner,owner,,",
                           "Triage@1,pinned,agent_identity,user,owner,owner,,"))

    assert Agent.objects.get(name="latest").blueprint.version == 2  # 3 is not complete
    assert Agent.objects.get(name="pinned").blueprint.version == 1


def test_r9_a_blueprint_with_no_complete_version_is_an_error_naming_the_row(world, blueprints):
    make_blueprint("Draft", complete=False)
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, _csv(GOOD_ROWS[0], "Draft,draft-1,agent_identity,user,owner,owner,,"))
    assert _problems(excinfo) == [(2, "blueprint", "no version of Draft is complete yet: an owner must map its "
                                                   "skills first")]
    with pytest.raises(ProvisioningError) as excinfo:  # naming the incomplete version: the registry's rule
        _provision(world, _csv("Draft@1,draft-1,agent_identity,user,owner,owner,,"))
    assert _problems(excinfo)[0][:2] == (1, "blueprint") and "skills the catalog does not know" in str(excinfo.value)


# --- all-or-nothing, row-numbered errors -------------------------------------------------------------------


def test_r9_one_bad_row_among_good_ones_creates_nothing_and_names_row_and_column(world, blueprints):
    text = _csv(GOOD_ROWS[0], GOOD_ROWS[1], "Triage,triage-3,agent_identity,user,bob,owner,,", GOOD_ROWS[2])
    agents, events = Agent.objects.count(), AuditEvent.objects.count()

    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text)

    assert _problems(excinfo) == [(3, "sponsors", "no user is called 'bob'")]
    assert "Row 3, column sponsors: no user is called 'bob'" in excinfo.value.messages
    assert (Agent.objects.count(), AuditEvent.objects.count()) == (agents, events)
    assert not User.objects.filter(kind="agent_user").exists()


def test_r9_every_problem_of_the_file_is_reported_at_once(world, blueprints):
    text = _csv(
        "Nope,a-1,agent_identity,user,owner,owner,,",                          # 1 unknown blueprint
        "Triage,a-2,robot,user,owner,owner,,",                                 # 2 bad identity type
        "Triage,a-3,user_account,user,owner,owner,,",                          # 3 run-as account missing
        "Triage,a-4,agent_identity,user,owner,ghost,colour,2030-01-01T00:00",  # 4 owner, attributes, naive expiry
        "Triage,a-5,agent_identity,galaxy,owner,owner,,tomorrow",              # 5 scope (registry), expiry
        "Triage,A-2,agent_identity,user,,owner,,",                             # 6 duplicate name, no sponsor
        "PartnerBot,a-7,agent_identity,user,owner,owner,,",                    # 7 R2: partner → no agent identity
    )
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text)

    problems = _problems(excinfo)
    assert [(row, column) for row, column, _ in problems] == [
        (1, "blueprint"), (2, "identity_type"), (3, "identity_type"), (4, "owners"), (4, "attributes"),
        (4, "expires_at"), (5, "scope"), (5, "expires_at"), (6, "name"), (6, "sponsors"), (7, "identity_type")]
    messages = dict(((row, column), message) for row, column, message in problems)
    assert messages[1, "blueprint"] == "no blueprint is called 'Nope'"
    assert messages[2, "identity_type"] == "'robot' is not agent_identity or user_account:<username>"
    assert messages[3, "identity_type"] == "name the account the agent runs as: user_account:<username>"
    assert messages[4, "owners"] == "no user is called 'ghost'"
    assert messages[4, "attributes"] == "'colour' is not key=value"
    assert "has no time zone" in messages[4, "expires_at"]
    assert messages[5, "scope"] == "'galaxy' is not workspace or user"
    assert "not an ISO 8601" in messages[5, "expires_at"]
    assert messages[6, "name"] == "an agent called 'A-2' already exists in Alpha"
    assert "run it as an existing user account" in messages[7, "identity_type"]
    assert not Agent.objects.exists()


def test_r9_r10_a_contributor_asking_for_workspace_scope_is_refused_on_that_row(world, blueprints):
    text = _csv("Triage,mine,agent_identity,user,contributor,contributor,,",
                "Triage,ours,agent_identity,workspace,contributor,contributor,,")
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text, actor=world.contributor)

    assert _problems(excinfo) == [(2, "scope", "contributors set up agents at user scope only")]
    assert not Agent.objects.exists()
    assert [p.agent.name for p in _provision(world, _csv(text.splitlines()[1]), actor=world.contributor).created
            ] == ["mine"]


def test_r9_a_name_already_in_the_workspace_is_refused(world, blueprints):
    _provision(world, _csv(GOOD_ROWS[0]))
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, _csv(GOOD_ROWS[1], GOOD_ROWS[0].replace("triage-1", "TRIAGE-1")))
    assert _problems(excinfo) == [(2, "name", "an agent called 'TRIAGE-1' already exists in Alpha")]


@pytest.mark.parametrize(("text", "filename", "message"), [
    ("", "a.csv", "the file is empty"),
    ("\ufeff\n \n", "a.csv", "the file is empty"),
    (HEADER + "\n", "a.csv", "the file has a header but no agents"),
    ("blueprint,name,identity,scope,sponsor,owners\nTriage,x,agent_identity,user,owner,owner\n", "a.csv",
     "the header must be blueprint,name,identity_type,scope,sponsors,owners,attributes,expires_at (unknown "
     "column(s) 'identity', 'sponsor'; missing column(s) 'identity_type', 'sponsors')"),
    ("[]", "a.json", "the file lists no agents"),
    ('{"name": "x"}', "a.json", "a JSON bulk file is a list of objects, one per agent"),
    ('[{"name": "x",}]', "a.json", "not valid JSON: Expecting property name enclosed in double quotes at line 1, "
                                   "column 15"),
    (b"blueprint,name\xff".decode("latin-1").encode("latin-1"), "a.csv", "the file is not UTF-8 text"),
])
def test_r9_a_file_that_cannot_be_read_is_one_clear_error(world, blueprints, text, filename, message):
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text, filename=filename)
    ((row, column, found),) = _problems(excinfo)
    assert (row, column) == (None, "file") and found.startswith(message)


def test_r9_the_header_may_leave_out_the_optional_columns_and_blank_lines_are_not_counted(world, blueprints):
    text = "Name , Blueprint,IDENTITY_TYPE,scope,sponsors,owners\n\nshort,Triage,agent_identity,user,owner,owner\n" \
           "\nbad,Triage,agent_identity,user,owner,nobody\n"
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text)
    assert _problems(excinfo) == [(2, "owners", "no user is called 'nobody'")]


def test_r9_json_objects_are_checked_key_by_key(world, blueprints):
    text = json.dumps([
        "not an object",
        {"blueprint": "Triage", "name": "j", "identity_type": "agent_identity", "scope": "user",
         "sponsors": "owner", "owners": ["owner"], "colour": "blue", "attributes": ["a=b"]},
        {"blueprint": "Triage", "name": 7, "identity_type": "agent_identity", "scope": "user", "owners": ["owner"]},
    ])
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, text, filename="f.json")
    assert [(row, column) for row, column, _ in _problems(excinfo)] == [
        (1, "(row)"), (2, "sponsors"), (2, "attributes"), (2, "colour"), (3, "name"),
        (3, "sponsors")]


def test_r9_dry_run_checks_everything_and_writes_nothing(world, blueprints):
    events = AuditEvent.objects.count()
    result = _provision(world, _csv(*GOOD_ROWS), dry_run=True)

    assert (result.dry_run, result.total, result.created) == (True, 3, [])
    assert not Agent.objects.exists() and AuditEvent.objects.count() == events
    with pytest.raises(ProvisioningError):
        _provision(world, _csv(GOOD_ROWS[0], "Nope,x,agent_identity,user,owner,owner,,"), dry_run=True)


def test_r9_progress_is_reported_per_batch(world, blueprints, monkeypatch):
    monkeypatch.setattr(registry, "BATCH", 2)
    seen = []
    rows = [f"Triage,p-{i},agent_identity,user,owner,owner,," for i in range(5)]
    _provision(world, _csv(*rows), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 5), (2, 5), (4, 5), (5, 5)]


def _statements(captured) -> Counter:
    """INSERTs per table, every other statement under its verb."""
    kinds = Counter()
    for query in captured:
        sql = query["sql"]
        kinds["INSERT " + sql.split('"')[1] if sql.startswith("INSERT") else sql.split()[0]] += 1
    return kinds


def test_r9_queries_do_not_grow_with_rows_only_inserts_split_into_batches(world, blueprints):
    """200 and 2,000 rows run the same lookups (blueprints in one query, people in one, names in one …).

    Only the INSERTs differ, and exactly as batching says: each table is written in statements of at most
    ``registry.BATCH`` (2,000) rows, and of at most what the backend allows in one statement
    (``bulk_batch_size``: no limit on PostgreSQL; 999 parameters on SQLite, e.g. 999 // 14 columns = 71 agents).
    On PostgreSQL that makes 200 and 2,000 rows differ by 4 statements: the permission grants (2 per agent →
    4,000 rows → 2 statements), the owner/sponsor links (3 per agent → 6,000 rows → 3 statements) and the
    sponsorships (R30: 2 per agent → 4,000 rows → 2 statements). The one person asked to sponsor (owner_b; the
    owner named themself) is told once for the whole file: one notification row.
    """
    def measure(n: int, prefix: str) -> Counter:
        rows = [f"Triage,{prefix}-{i:05d},agent_identity,workspace,owner;owner_b,owner,tier=1,2030-01-01T00:00:00Z"
                for i in range(n)]
        with CaptureQueriesContext(connection) as ctx:
            _provision(world, _csv(*rows))
        return _statements(ctx.captured_queries)

    measure(1, "warm-up")  # caches that live for the process (content types, the actor's permissions)
    small, large = measure(200, "s"), measure(2000, "l")

    others = {k: v for k, v in small.items() if not k.startswith("INSERT")}
    assert others == {k: v for k, v in large.items() if not k.startswith("INSERT")}
    assert sum(others.values()) <= 12

    def inserts(model, rows: int) -> int:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        per_statement = min(registry.BATCH, connection.ops.bulk_batch_size(fields, [None] * rows))
        return math.ceil(rows / per_statement)

    rows_per_agent = {Agent: 1, AgentIdentity: 1, PermissionGrant: 2, User: 1, AgentUser: 1, Credential: 1,
                      AgentUserObjectPermission: 3, AttributeValue: 1, AuditEvent: 1, Sponsorship: 2}
    for measured, n in ((small, 200), (large, 2000)):
        assert {k: v for k, v in measured.items() if k.startswith("INSERT")} == {
            f"INSERT {model._meta.db_table}": inserts(model, n * per) for model, per in rows_per_agent.items()} \
            | {"INSERT portal_notification": 1}
    if connection.vendor == "postgresql":
        assert sum(large.values()) - sum(small.values()) == 4


# --- the command --------------------------------------------------------------------------------------------


def _write(tmp_path, text: str, name: str = "agents.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_r9_command_writes_secrets_to_a_new_0600_file_that_verify_against_the_stored_hashes(world, blueprints,
                                                                                              tmp_path):
    source, secrets_path = _write(tmp_path, _csv(*GOOD_ROWS)), tmp_path / "secrets.csv"
    out = io.StringIO()
    call_command("provision_agents", source, "--workspace", "alpha", "--secrets-out", str(secrets_path),
                 stdout=out, stderr=io.StringIO())

    assert "Created 3 agents in alpha (2 with an agent identity)" in out.getvalue()
    assert stat.S_IMODE(os.stat(secrets_path).st_mode) == 0o600
    rows = list(csv.DictReader(secrets_path.read_text().splitlines()))
    assert [r["name"] for r in rows] == ["triage-1", "triage-2"]  # one line per agent identity
    for row in rows:
        credential = Credential.objects.get(identity__client_id=row["client_id"])
        assert credential.identity.agent.name == row["name"]
        assert credentials.hash_secret(row["client_secret"]) == credential.secret_hash
    assert AuditEvent.objects.filter(action="agent.create", actor__isnull=True, actor_kind="system").count() == 3


def test_r9_command_refuses_to_overwrite_a_secrets_file_and_creates_nothing(world, blueprints, tmp_path):
    source = _write(tmp_path, _csv(GOOD_ROWS[0]))
    existing = tmp_path / "secrets.csv"
    existing.write_text("keep me")
    with pytest.raises(CommandError, match="already exists; refusing to overwrite"):
        call_command("provision_agents", source, "--workspace", "alpha", "--secrets-out", str(existing))
    assert existing.read_text() == "keep me" and not Agent.objects.exists()


def test_r9_command_reports_row_numbered_errors_creates_nothing_and_leaves_no_secrets_file(world, blueprints,
                                                                                         tmp_path):
    source = _write(tmp_path, _csv(GOOD_ROWS[0], "Triage,x,agent_identity,user,bob,owner,,"))
    secrets_path = tmp_path / "secrets.csv"
    err = io.StringIO()
    with pytest.raises(CommandError, match=r"1 problem\(s\) .* nothing was created"):
        call_command("provision_agents", source, "--workspace", "alpha", "--secrets-out", str(secrets_path),
                     stderr=err)
    assert "Row 2, column sponsors: no user is called 'bob'" in err.getvalue()
    assert not Agent.objects.exists() and not secrets_path.exists()


def test_r9_command_dry_run_says_how_many_would_be_created(world, blueprints, tmp_path):
    source = _write(tmp_path, json.dumps([{"blueprint": "Triage", "name": "d", "identity_type": "agent_identity",
                                           "scope": "user", "sponsors": ["owner"], "owners": ["owner"]}]), "a.json")
    out = io.StringIO()
    call_command("provision_agents", source, "--workspace", "alpha", "--dry-run", "--secrets-out",
                 str(tmp_path / "s.csv"), stdout=out)
    assert "1 agents would be created in alpha" in out.getvalue()
    assert not Agent.objects.exists() and not (tmp_path / "s.csv").exists()


def test_r9_command_without_secrets_out_warns_that_secrets_were_not_saved(world, blueprints, tmp_path):
    err, out = io.StringIO(), io.StringIO()
    call_command("provision_agents", _write(tmp_path, _csv(GOOD_ROWS[0])), "--workspace", "alpha", stdout=out,
                 stderr=err)
    assert "were not saved" in err.getvalue() and "rotate" in err.getvalue()
    assert "aip_" not in out.getvalue() + err.getvalue()


def test_r9_r10_command_as_a_contributor_follows_their_role(world, blueprints, tmp_path):
    source = _write(tmp_path, _csv(GOOD_ROWS[0]))
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("provision_agents", source, "--workspace", "alpha", "--as", "contributor", stderr=err)
    assert "Row 1, column scope: contributors set up agents at user scope only" in err.getvalue()
    with pytest.raises(CommandError, match="No workspace has the slug 'nope'"):
        call_command("provision_agents", source, "--workspace", "nope")


# --- bulk jobs: upload, worker, one download ------------------------------------------------------------------


@pytest.fixture
def sent(monkeypatch):
    """What would go to the broker (the non-transactional tests never commit, so nothing is really sent)."""
    calls = []
    monkeypatch.setattr(bulk, "_enqueue", lambda job_id, key: calls.append((job_id, key)))
    return calls


def test_r9_bulk_job_start_validates_first_stores_no_job_for_a_bad_file_and_needs_membership(world, blueprints,
                                                                                               sent):
    with pytest.raises(ProvisioningError) as excinfo:
        bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="a.csv",
                            content=_csv("Nope,x,agent_identity,user,owner,owner,,"))
    assert _problems(excinfo) == [(1, "blueprint", "no blueprint is called 'Nope'")]
    with pytest.raises(PermissionDenied):
        bulk.bulk_job_start(actor=world.other, workspace=world.alpha, upload_name="a.csv", content=_csv(*GOOD_ROWS))
    assert not BulkJob.objects.exists() and not Agent.objects.exists()


def test_r9_bulk_job_is_queued_after_commit_with_its_key_and_an_audit_event(world, blueprints,
                                                                             django_capture_on_commit_callbacks,
                                                                             monkeypatch):
    from agents import tasks

    sent = []
    monkeypatch.setattr(tasks.run_bulk_job, "apply_async", lambda **kwargs: sent.append(kwargs))
    with django_capture_on_commit_callbacks(execute=True):
        job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="agents.csv",
                                       content=_csv(*GOOD_ROWS))
        assert sent == []  # nothing leaves before the transaction commits
    assert (job.status, job.total, job.done, job.file_format, job.requested_by) == ("queued", 3, 0, "csv",
                                                                                   world.owner)
    assert [(call["args"], call["argsrepr"]) for call in sent] == [((job.pk, key.decode()),
                                                                     f"({job.pk}, '[redacted]')")]
    assert key.decode() not in job.payload
    event = AuditEvent.objects.get(action="agent.bulk_upload")
    assert (event.actor, event.after) == (world.owner, {"filename": "agents.csv", "format": "csv", "rows": 3})
    assert not Agent.objects.exists()  # the worker creates them


def test_r9_bulk_job_runs_once_and_its_secrets_download_once_for_the_requester_only(world, blueprints, sent):
    job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="agents.csv",
                                   content=_csv(*GOOD_ROWS))
    job = bulk.bulk_job_run(job.pk, key.decode())

    assert (job.status, job.done, job.total, job.problems, job.error) == ("succeeded", 3, 3, [], "")
    assert job.finished_at and job.secrets_ciphertext
    assert Agent.objects.filter(workspace=world.alpha, created_by=world.owner).count() == 3
    again = bulk.bulk_job_run(job.pk, key.decode())  # a second delivery of the message does nothing
    assert again.status == "succeeded" and Agent.objects.count() == 3

    with pytest.raises(PermissionDenied):
        bulk.bulk_job_secrets_download(actor=world.owner_b, job=job, key=key)
    with pytest.raises(ValidationError, match="key for these secrets is missing or wrong"):
        bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=bulk.encrypt_secrets("")[0])
    text = bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=key)
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["name"] for r in rows] == ["triage-1", "triage-2"]
    for row in rows:
        assert Credential.objects.get(identity__client_id=row["client_id"]).secret_hash == credentials.hash_secret(
            row["client_secret"])
    job.refresh_from_db()
    assert job.secrets_ciphertext is None and job.secrets_downloaded_at is not None
    with pytest.raises(ValidationError, match="already downloaded"):
        bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=key)
    assert AuditEvent.objects.filter(action="agent.bulk_secrets_download", actor=world.owner).count() == 1


def test_r9_no_secret_reaches_the_audit_trail_or_the_job_row(world, blueprints, sent):
    job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="agents.csv",
                                   content=_csv(*GOOD_ROWS))
    job = bulk.bulk_job_run(job.pk, key)
    secrets = [r["client_secret"] for r in csv.DictReader(
        bulk.decrypt_secrets(key, job.secrets_ciphertext).splitlines())]
    assert len(secrets) == 2 and all(s.startswith("aip_") for s in secrets)

    def stored_text() -> str:
        events = AuditEvent.objects.values_list("before", "after", "target_label")
        row = BulkJob.objects.values_list("payload", "problems", "error", "filename").get(pk=job.pk)
        return json.dumps([list(events), list(row)], default=str) + key.decode()

    for secret in secrets:
        assert secret not in stored_text() and secret.encode() not in bytes(job.secrets_ciphertext)
    bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=key)
    assert not any(secret in stored_text() for secret in secrets)


def test_r9_a_bulk_job_refused_at_run_time_records_its_problems_and_creates_nothing(world, blueprints, sent):
    job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="agents.json",
                                   content=json.dumps([{"blueprint": "Triage", "name": "late", "scope": "user",
                                                        "identity_type": "agent_identity", "sponsors": ["owner"],
                                                        "owners": ["owner"]}]))
    _provision(world, _csv("Triage,late,agent_identity,user,owner,owner,,"))  # someone was faster
    job = bulk.bulk_job_run(job.pk, key)

    assert (job.status, job.done, job.secrets_ciphertext) == ("failed", 0, None)
    assert job.problems == [[1, "name", "an agent called 'late' already exists in Alpha"]]
    assert Agent.objects.filter(name="late").count() == 1
    with pytest.raises(ValidationError, match="no secrets"):
        bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=key)
    assert AuditEvent.objects.get(action="agent.bulk_job_finish").after["status"] == "failed"


def test_r9_a_bulk_job_whose_requester_was_deactivated_does_not_run(world, blueprints, sent):
    job, key = bulk.bulk_job_start(actor=world.contributor, workspace=world.alpha, upload_name="a.csv",
                                   content=_csv(GOOD_ROWS[1]))
    User.objects.filter(pk=world.contributor.pk).update(is_active=False)
    job = bulk.bulk_job_run(job.pk, key)
    assert job.status == "failed" and "deactivated" in job.error and not Agent.objects.exists()


def test_r9_a_crash_in_a_bulk_job_is_recorded_and_rolls_everything_back(world, blueprints, sent, monkeypatch):
    job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="a.csv",
                                   content=_csv(*GOOD_ROWS))

    def explode(created):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bulk, "secrets_csv", explode)  # after the agents were written, before commit
    job = bulk.bulk_job_run(job.pk, key)
    assert job.status == "failed" and job.error.startswith("RuntimeError: disk on fire")
    assert not Agent.objects.exists() and not Credential.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_r9_progress_is_visible_to_other_connections_while_the_job_is_still_all_or_nothing(postgres, world,
                                                                                            blueprints, sent,
                                                                                            monkeypatch):
    """PostgreSQL: progress goes through a second connection, so a reader sees ``done`` grow while no agent is
    visible yet (they all appear at commit)."""
    monkeypatch.setattr(registry, "BATCH", 2)
    job, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="a.csv",
                                   content=_csv(*[f"Triage,v-{i},agent_identity,user,owner,owner,," for i in range(5)]))
    reader = connections.create_connection("default")
    seen = []
    original = bulk._ProgressWriter.__call__

    def spy(self, done, total):
        original(self, done, total)
        with reader.cursor() as cursor:
            cursor.execute("SELECT done FROM agents_bulkjob WHERE id = %s", [job.pk])
            (visible_done,) = cursor.fetchone()
            cursor.execute("SELECT count(*) FROM agents_agent")
            (visible_agents,) = cursor.fetchone()
        seen.append((visible_done, visible_agents))

    monkeypatch.setattr(bulk._ProgressWriter, "__call__", spy)
    try:
        job = bulk.bulk_job_run(job.pk, key)
    finally:
        reader.close()
    assert job.status == "succeeded", job.error
    assert seen == [(0, 0), (2, 0), (4, 0), (5, 0)]
    assert Agent.objects.count() == 5 and BulkJob.objects.get(pk=job.pk).done == 5


@pytest.mark.django_db(transaction=True)
def test_r9_bulk_upload_runs_on_a_real_celery_worker_over_redis(redis_url, world, blueprints):
    """Upload → Redis → a real worker thread provisions the file and stores the secrets encrypted."""
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app as celery_app

    assert celery_app.conf.broker_url == redis_url
    celery_app.control.purge()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        queued, key = bulk.bulk_job_start(actor=world.owner, workspace=world.alpha, upload_name="agents.csv",
                                          content=_csv(*GOOD_ROWS))  # sent on commit
        deadline = time.monotonic() + 30
        job = queued
        while time.monotonic() < deadline:
            job = BulkJob.objects.get(pk=queued.pk)
            if job.status in ("succeeded", "failed"):
                break
            time.sleep(0.2)
    assert job.status == "succeeded", job.error or job.problems
    assert (job.done, job.total) == (3, 3)
    assert Agent.objects.filter(workspace=world.alpha).count() == 3
    text = bulk.bulk_job_secrets_download(actor=world.owner, job=job, key=key)
    assert len(text.strip().splitlines()) == 3  # header + two agent identities


# --- files too deep or too long are refused before anything is read into agents ----------------------------


def _deep_json(depth: int = 100_000) -> str:
    return "[" * depth + "]" * depth


def test_r9_a_deeply_nested_json_file_is_one_clear_error_not_a_crash(world, blueprints):
    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, _deep_json(), filename="agents.json")

    [(row, column, message)] = _problems(excinfo)
    assert (row, column) == (None, bulk.FILE)
    assert "nested too deeply" in message
    assert not Agent.objects.exists()


def test_r9_a_deeply_nested_json_upload_is_refused_on_the_page(client, world, blueprints):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(world.owner)
    response = client.post("/agents/bulk/", {"file": SimpleUploadedFile("agents.json", _deep_json().encode())})

    assert response.status_code == 200
    assert "nested too deeply" in response.content.decode()
    assert not BulkJob.objects.exists()
    assert not Agent.objects.exists()


def _rows(count: int) -> list[str]:
    return [f"Triage,bulk-{n},agent_identity,workspace,owner,owner,," for n in range(count)]


def test_r9_bulk_max_rows_refuses_a_longer_csv_file_before_creating_anything(world, blueprints, settings):
    settings.BULK_MAX_ROWS = 5
    assert len(_provision(world, _csv(*_rows(5))).created) == 5  # the limit itself is allowed

    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, _csv(*[r.replace("bulk-", "more-") for r in _rows(6)]))

    [(row, column, message)] = _problems(excinfo)
    assert (row, column) == (None, bulk.FILE)
    assert "at most 5 agents" in message
    assert not Agent.objects.filter(name__startswith="more-").exists()


def test_r9_bulk_max_rows_refuses_a_longer_json_file(world, blueprints, settings):
    settings.BULK_MAX_ROWS = 5
    items = [{"blueprint": "Triage", "name": f"bulk-{n}", "identity_type": "agent_identity", "scope": "workspace",
              "sponsors": ["owner"], "owners": ["owner"]} for n in range(6)]

    with pytest.raises(ProvisioningError) as excinfo:
        _provision(world, json.dumps(items), filename="agents.json")

    assert "at most 5 agents" in _problems(excinfo)[0][2]
    assert not Agent.objects.exists()


def test_r9_bulk_max_rows_applies_to_the_command_and_the_upload(client, world, blueprints, settings, tmp_path):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.BULK_MAX_ROWS = 5
    err = io.StringIO()
    with pytest.raises(CommandError):
        call_command("provision_agents", _write(tmp_path, _csv(*_rows(6))), "--workspace", "alpha", stderr=err)
    assert "at most 5 agents" in err.getvalue()

    client.force_login(world.owner)
    response = client.post("/agents/bulk/", {"file": SimpleUploadedFile("agents.csv", _csv(*_rows(6)).encode())})
    assert "at most 5 agents" in response.content.decode()
    assert not BulkJob.objects.exists()
    assert not Agent.objects.exists()


def test_r9_secrets_csv_neutralises_an_agent_name_that_starts_like_a_formula(world, blueprints):
    result = _provision(world, _csv("Triage,-2+3,agent_identity,user,owner,owner,,",
                                    "Triage,@A1,agent_identity,user,owner,owner,,"))
    rows = {row["client_id"]: row for row in csv.DictReader(io.StringIO(bulk.secrets_csv(result.created)))}
    assert sorted(row["name"] for row in rows.values()) == ["'-2+3", "'@A1"]
    assert {row["client_secret"][:4] for row in rows.values()} == {"aip_"}  # secrets stay usable as they are
