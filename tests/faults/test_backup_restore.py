"""A backup restored into a fresh database verifies and still authenticates agents (R22, R23; README, "Running in
production", "Backups").

The portal's data is in PostgreSQL; what is not in the database and must be kept beside the dump is the key that
hashes client secrets (``CREDENTIAL_HASH_KEY``, derived from ``SECRET_KEY`` when unset). The test builds data on a
throwaway PostgreSQL, backs it up with the README's commands (``pg_dump -Fc``; ``createdb`` and ``pg_restore``
into a fresh database, with the binaries of the server's own version), and checks the restored database:
``manage.py verify_audit_log`` passes over every event, and each agent's existing secret gets a token from it —
with the same key, and not with another.
"""

from __future__ import annotations

import json
import subprocess

from tests.faults.conftest import manage, portal_env

SECRET_KEY = "backup-test-" + "s" * 50
BUILD = """
import json
from agents import registry
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace
owner = UserFactory(username="owner")
workspace = make_workspace("alpha", owners=[owner, UserFactory(username="owner_b")])
blueprint = make_blueprint("BackedUpAgent", permissions=("User.Read.All",))
credentials = []
for number in range(3):
    agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
        blueprint, f"backed-up-agent-{number}", sponsors=[owner], owners=[owner])).agent
    credential, secret = registry.credential_rotate(actor=owner, agent=agent)
    credentials.append({"client_id": credential.identity.client_id, "secret": secret})
print(json.dumps(credentials))
"""
# Each agent's client-credentials request to the token endpoint, in process, against the configured database.
TOKEN_REQUESTS = """
import base64, json, os
from django.test import Client
statuses = []
for credential in json.loads(os.environ["AGENT_CREDENTIALS"]):
    basic = base64.b64encode(f"{credential['client_id']}:{credential['secret']}".encode()).decode()
    response = Client().post("/oauth/token/", {"grant_type": "client_credentials"}, HTTP_HOST="127.0.0.1",
                             secure=True, HTTP_AUTHORIZATION=f"Basic {basic}")
    statuses.append(response.status_code)
print(json.dumps(statuses))
"""


def _run(*command: str) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _token_statuses(env: dict[str, str], credentials: list[dict]) -> list[int]:
    done = manage({**env, "AGENT_CREDENTIALS": json.dumps(credentials)}, "shell", "-v0", "-c", TOKEN_REQUESTS)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_r23_a_dump_restored_into_a_fresh_database_verifies_and_agents_still_authenticate(throwaway_postgres,
                                                                                          tmp_path):
    postgres = throwaway_postgres
    postgres.query("CREATE DATABASE backed_up", database="postgres")
    source = portal_env(tmp_path / "source", database_url=postgres.url("backed_up"), SECRET_KEY=SECRET_KEY)
    manage(source, "migrate", "--noinput", "-v0")
    credentials = json.loads(manage(source, "shell", "-v0", "-c", BUILD).stdout.strip().splitlines()[-1])
    assert _token_statuses(source, credentials) == [200, 200, 200]  # sign-in rows and tokens in the dump too
    [(events,)] = postgres.query("SELECT COUNT(*) FROM portal_auditevent", database="backed_up")

    # The README's commands, with the binaries of the server's own version.
    server = ("--host", "127.0.0.1", "--port", str(postgres.port), "--username", "postgres")
    dump = tmp_path / "portal.dump"
    _run(str(postgres.bin / "pg_dump"), *server, "--format=custom", "--file", str(dump), "backed_up")
    _run(str(postgres.bin / "createdb"), *server, "restored")
    _run(str(postgres.bin / "pg_restore"), *server, "--no-owner", "--exit-on-error", "--dbname", "restored",
         str(dump))

    restored = portal_env(tmp_path / "restored", database_url=postgres.url("restored"), SECRET_KEY=SECRET_KEY)
    verified = manage(restored, "verify_audit_log")
    assert f"Audit trail intact: {events} events verified." in verified.stdout
    assert _token_statuses(restored, credentials) == [200, 200, 200]
    # The secrets are kept as HMACs under a key derived from SECRET_KEY: restored without it, none authenticates.
    assert _token_statuses({**restored, "SECRET_KEY": "another-" + "k" * 50}, credentials) == [401, 401, 401]
