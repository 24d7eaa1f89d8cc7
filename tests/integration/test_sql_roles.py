"""Sources connect as read-only roles: the role SQL in docs/how-to/sql-sources.md works
as written on PostgreSQL and MariaDB (the role reads, cannot write), and `exportd serve`
/ `exportd worker` warn at start about a superuser, an unreachable source and a named
query that would be refused, without failing to start."""

from __future__ import annotations

import json
import logging
import re
import select
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sql_sources import Ctx, mysql_source, pg_source, writable

from conftest import free_port
from exportd.config import Settings
from exportd.exporters.sources import warn_about_sources
from exportd.exporters.sql import SqlParams, sql
from exportd.store import open_store

__all__ = ["mysql_source", "pg_source"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "sql-sources.md"


def doc_block(label: str) -> list[str]:
    """The statements of the doc's ```sql <label> block."""
    match = re.search(rf"```sql {label}\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match is not None, f"no ```sql {label} block in {DOC}"
    return [part.strip() for part in match.group(1).split(";") if part.strip()]


def with_user(url: str, user: str) -> str:
    """`url` logging in as `user` with the doc's password."""
    return sa.make_url(url).set(username=user, password="change-me").render_as_string(False)


def export_all(url: str) -> pa.Table:
    queries = {"all": {"sql": "SELECT * FROM orders ORDER BY id"}}
    settings = Settings(sources=json.dumps({"shop": {"url": url, "queries": queries}}))
    batches = list(sql(SqlParams(source="shop", query="all"), Ctx(settings, fmt="parquet")))
    return pa.Table.from_batches(batches)


@pytest.fixture
def pg_reader(pg_source: str) -> Iterator[str]:
    """The source URL as a role made by the doc's PostgreSQL block, dropped afterwards."""
    role = f"exportd_reader_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(pg_source).database
    engine = writable(pg_source)
    with engine.begin() as conn:
        for statement in doc_block("postgres-role"):
            statement = statement.replace("exportd_reader", role)
            conn.exec_driver_sql(statement.replace("DATABASE shop", f'DATABASE "{database}"'))
    try:
        yield with_user(pg_source, role)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()


@pytest.mark.postgres
def test_the_documented_postgres_role_reads_and_cannot_write(pg_reader: str) -> None:
    """As the documented role, an export reads every row; outside exportd's own
    read-only transaction the role still cannot write (read-only by default, no
    privilege), and it is not a superuser."""
    assert export_all(pg_reader).num_rows == 60
    engine = sa.create_engine(pg_reader.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
        assert conn.exec_driver_sql("SHOW is_superuser").scalar() == "off"
    for statement in ("DELETE FROM orders", "SET TRANSACTION READ WRITE; DELETE FROM orders"):
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    engine.dispose()
    assert export_all(pg_reader).num_rows == 60


@pytest.fixture
def mysql_reader(mysql_source: str) -> Iterator[str]:
    """The source URL as a user made by the doc's MySQL block, dropped afterwards."""
    user = f"exportd_reader_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(mysql_source).database
    engine = writable(mysql_source)
    with engine.begin() as conn:
        for statement in doc_block("mysql-role"):
            statement = statement.replace("exportd_reader", user).replace("%", "%%")  # pymysql
            conn.exec_driver_sql(statement.replace("shop.*", f"`{database}`.*"))
    try:
        yield with_user(mysql_source, user)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP USER '{user}'@'%%'")  # pymysql formats `%`
        engine.dispose()


@pytest.mark.mysql
def test_the_documented_mysql_user_reads_and_cannot_write(mysql_reader: str) -> None:
    """As the documented MySQL/MariaDB user, an export reads every row and a write is
    refused for lack of privilege."""
    assert export_all(mysql_reader).num_rows == 60
    with pytest.raises(sa.exc.DBAPIError), writable(mysql_reader).begin() as conn:
        conn.exec_driver_sql("DELETE FROM orders")
    assert export_all(mysql_reader).num_rows == 60


def warned_sources(pg_url: str, reader_url: str | None, tmp_path: Path) -> str:
    sources = {
        "super": {"url": pg_url},
        "gone": {"url": f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"},
        "local": {
            "url": f"sqlite:///{tmp_path / 'none.db'}",
            "queries": {"ok": {"sql": "SELECT 1"}, "bad": {"sql": "SELECT 1; DELETE FROM t"}},
        },
    }
    if reader_url is not None:
        sources["reader"] = {"url": reader_url}
    return json.dumps(sources)


def warnings_about(caplog: pytest.LogCaptureFixture, words: str) -> list[str]:
    found = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    return [message for message in found if words in message]


@pytest.mark.postgres
def test_start_warns_about_superusers_unreachable_sources_and_bad_queries(
    pg_source: str, pg_reader: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One WARNING names the superuser source, one the unreachable one, one the refused
    named query; the read-only role and the good query get none, and nothing raises."""
    caplog.set_level(logging.WARNING, logger="exportd.exporters.sources")
    warn_about_sources(Settings(sources=warned_sources(pg_source, pg_reader, tmp_path)))
    assert len(warnings_about(caplog, "")) == 3
    (superuser,) = warnings_about(caplog, "SQL source 'super'")
    assert "a superuser" in superuser and "read-only role" in superuser
    (gone,) = warnings_about(caplog, "SQL source 'gone'")
    assert "cannot be reached" in gone
    (bad,) = warnings_about(caplog, "SQL source 'local', query 'bad'")
    assert "more than one statement" in bad
    assert warnings_about(caplog, "'reader'") == []


def test_a_broken_sources_configuration_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Sources that do not validate are one WARNING at start, not a crash."""
    caplog.set_level(logging.WARNING, logger="exportd.exporters.sources")
    warn_about_sources(Settings(sources='{"shop": {"url": 5, "count": "sometimes"}}'))
    (message,) = warnings_about(caplog, "")
    assert "invalid SQL sources configuration" in message


def read_stderr_until(proc: subprocess.Popen[bytes], words: str, timeout: float = 30) -> str:
    """The worker's stderr up to the first line holding `words` (fails after `timeout`)."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while words.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            pytest.fail(f"no {words!r} on the worker's stderr: {seen.decode(errors='replace')}")
        ready, _, _ = select.select([proc.stderr], [], [], min(left, 0.5))
        if ready:
            seen += proc.stderr.read1(65536)  # type: ignore[attr-defined]
    return seen.decode(errors="replace")


@pytest.mark.postgres
@pytest.mark.slow
def test_exportd_worker_logs_the_warnings_and_keeps_running(
    pg_source: str,
    tmp_path: Path,
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    """`exportd worker` with a superuser source and an unreachable one logs a WARNING
    naming each, once, and goes on running."""
    store_url = f"sqlite:///{tmp_path / 'exportd.db'}"
    store = open_store(store_url)
    store.migrate()
    store.dispose()
    settings = Settings(
        home=tmp_path / "home",
        database_url=store_url,
        sources=warned_sources(pg_source, None, tmp_path),
    )
    proc = spawn_worker(settings)
    text = read_stderr_until(proc, "cannot be reached")
    text += read_stderr_until(proc, "a superuser") if "a superuser" not in text else ""
    assert proc.poll() is None
    lines = [line for line in text.splitlines() if " WARNING " in line]
    assert sum("SQL source 'super'" in line for line in lines) == 1
    assert sum("SQL source 'gone'" in line for line in lines) == 1
