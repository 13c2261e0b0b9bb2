"""Fault tests: the portal as it runs in production (gunicorn, DEBUG off, PostgreSQL, Redis), on throwaway
PostgreSQL and Redis servers that the tests start on free loopback ports and break on purpose (docs/design.md,
"Faults"). The shared services on 5432 and 6379 are never touched.

- ``throwaway_postgres``: a fresh cluster (``initdb``/``pg_ctl`` from ``/usr/lib/postgresql/<version>/bin``, run as
  the ``postgres`` OS user when the tests run as root: PostgreSQL refuses to run as root) in a temporary directory.
- ``throwaway_redis``: ``redis-server`` without persistence.
- ``portal_env(postgres, redis)``: the environment of a production portal on them; ``manage(env, ...)`` runs a
  management command in it (``migrate`` first, a seeding script through ``shell -c``).
- ``start_gunicorn``: starts gunicorn with that environment (2 sync workers by default) and stops it at teardown.
- ``record_figure(line)``: prints a figure as one JSON line in the bench format and appends it to
  ``test-artifacts/fault-figures.jsonl``.

A missing binary fails the test under ``REQUIRE_SERVICES=1`` (CI) and skips it elsewhere. Every process started
here is stopped at teardown, also when the test fails.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import _missing

STARTUP_TIMEOUT = 120  # seconds: a loaded 2-core machine starts PostgreSQL or gunicorn slowly
FIGURES_FILE = "test-artifacts/fault-figures.jsonl"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen | None = None, log: Path | None = None,
                  timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"exited early ({process.returncode}):\n{_tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.1)
        else:
            return
    pytest.fail(f"nothing listens on {port} after {timeout} s:\n{_tail(log)}")


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path | None, chars: int = 3000) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-chars:]


# --- PostgreSQL ------------------------------------------------------------------------------------------------
def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                      if p.parent.parent.name.isdigit() else 0)
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class ThrowawayPostgres:
    """A PostgreSQL cluster of the test's own, trusting loopback connections as ``postgres``."""

    bin: Path
    data: Path
    port: int
    run_as: list[str]  # prefix that runs a command as the cluster's OS user ([] when not root)

    @property
    def log(self) -> Path:
        return self.data.parent / "postgres.log"

    def url(self, database: str = "portal") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str, timeout: float = STARTUP_TIMEOUT) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.run_as, str(self.bin / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True, timeout=timeout + 30, check=False)
        assert done.returncode == 0, f"pg_ctl {' '.join(args)}:\n{done.stdout}\n{done.stderr}\n{_tail(self.log)}"
        return done

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent} -c fsync=off"
        self.pg_ctl("start", "-w", "-t", str(STARTUP_TIMEOUT), "-l", str(self.log), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("stop", "-w", "-t", str(STARTUP_TIMEOUT), "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: what a minor upgrade or an operator does; returns once it accepts connections."""
        self.pg_ctl("restart", "-w", "-t", str(STARTUP_TIMEOUT), "-m", mode, "-l", str(self.log))

    def accepts_connections(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url("postgres"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def query(self, sql: str, database: str = "portal") -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url(database), connect_timeout=10, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A fresh PostgreSQL on a free loopback port with an empty ``portal`` database; removed at teardown."""
    bin_dir = _postgres_bin()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        _missing("PostgreSQL's initdb and pg_ctl", "apt-get install postgresql (/usr/lib/postgresql/<ver>/bin)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb and postgres refuse to run as root
        runuser = shutil.which("runuser")
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            owner = None
        if runuser is None or owner is None:
            _missing("the postgres OS user and runuser", "PostgreSQL refuses to run as root")
        run_as = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="aip-fault-pg-"))
    if run_as:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    server = ThrowawayPostgres(bin=bin_dir, data=root / "data", port=free_port(), run_as=run_as)
    try:
        done = subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres",
                               "--auth=trust", "-E", "UTF8", "--no-sync"],
                              capture_output=True, text=True, timeout=STARTUP_TIMEOUT, check=False)
        assert done.returncode == 0, f"initdb:\n{done.stdout}\n{done.stderr}"
        server.start()
        server.query("CREATE DATABASE portal", database="postgres")
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(server.data), "stop", "-m", "immediate",
                            "-w", "-t", "60"], capture_output=True, timeout=90, check=False)
        shutil.rmtree(root, ignore_errors=True)


# --- Redis -----------------------------------------------------------------------------------------------------
@dataclass
class ThrowawayRedis:
    """A ``redis-server`` of the test's own, without persistence."""

    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None


@pytest.fixture(scope="module")
def throwaway_redis(tmp_path_factory) -> Iterator[ThrowawayRedis]:
    """A fresh Redis on a free loopback port; ``stop()``/``start()`` take it down and bring it back."""
    if shutil.which("redis-server") is None:
        _missing("redis-server", "apt-get install redis-server")
    server = ThrowawayRedis(port=free_port(), directory=tmp_path_factory.mktemp("fault-redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- the portal ------------------------------------------------------------------------------------------------
def portal_env(var: Path, *, database_url: str = "", redis_url: str = "", **extra: str) -> dict[str, str]:
    """The environment of a production portal (``DEBUG=0``) on these services, its files under ``var``."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DATABASE_URL", "REDIS_URL", "CONN_MAX_AGE", "DJANGO_SETTINGS_MODULE")}
    env.update(PORTAL_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="portal.settings", DEBUG="0",
               SECRET_KEY="fault-test-" + "k" * 50, ALLOWED_HOSTS="127.0.0.1,localhost",
               PORTAL_BASE_URL="https://127.0.0.1")
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def manage(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``manage.py ARGS`` in that environment; fails the test with its output when it fails."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"manage.py {args[0]}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


_AGENT_WITH_SECRET = """
import json
import os
from agents import registry
from tests.factories import UserFactory, agent_spec, make_blueprint, make_workspace
name = os.environ["FAULT_AGENT"]
owner = UserFactory(username="owner")
workspace = make_workspace("alpha", owners=[owner, UserFactory(username="owner_b")])
blueprint = make_blueprint(name.title().replace("-", ""), permissions=("User.Read.All",))
agent = registry.agent_create(actor=owner, workspace=workspace, spec=agent_spec(
    blueprint, name, sponsors=[owner], owners=[owner])).agent
credential, secret = registry.credential_rotate(actor=None, agent=agent)
print(json.dumps({"client_id": credential.identity.client_id, "secret": secret}))
"""


def migrated_with_an_agent(env: dict[str, str], name: str) -> dict[str, str]:
    """Migrate the portal's database, create one agent ``name`` (in workspace ``alpha``) with a client secret, and
    return its ``client_id`` and ``secret``."""
    manage(env, "migrate", "--noinput", "-v0")
    done = manage({**env, "FAULT_AGENT": name}, "shell", "-v0", "-c", _AGENT_WITH_SECRET)
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Gunicorn:
    """A running gunicorn: its port, process and log."""

    port: int
    process: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def reload(self) -> None:
        """SIGHUP: gunicorn starts new workers and stops the old ones gracefully."""
        self.process.send_signal(signal.SIGHUP)


@pytest.fixture
def start_gunicorn() -> Iterator[Callable[..., Gunicorn]]:
    """``start_gunicorn(env, workers=2, extra_args=())``: a gunicorn serving ``portal.wsgi`` on a free loopback
    port, returned once it accepts connections; every one started is stopped at teardown."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str], *, workers: int = 2, extra_args: tuple[str, ...] = ()) -> Gunicorn:
        port = free_port()
        log = Path(env["PORTAL_VAR_DIR"]) / f"gunicorn-{port}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--log-level", "warning", "--timeout", "60", *extra_args],
            cwd=settings.BASE_DIR, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        server = Gunicorn(port, process, log)
        started.append(server)
        wait_for_port(port, process, log)
        return server

    try:
        yield start
    finally:
        for server in started:
            stop_process(server.process)


def record_figure(line: dict) -> dict:
    """Print a figure as one JSON line (``manage.py bench``'s shape: ``scenario``, ``n``, ``seconds`` and extra
    keys) and append it to ``test-artifacts/fault-figures.jsonl``."""
    text = json.dumps(line)
    print(text)
    path = Path(settings.BASE_DIR) / FIGURES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(text + "\n")
    return line
