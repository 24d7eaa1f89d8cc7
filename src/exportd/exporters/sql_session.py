"""Read-only, consistent-snapshot sessions on a SQL source, per database.

`snapshot(url, timeout)` yields a SQLAlchemy connection inside one transaction that
cannot write and sees one snapshot for every statement it runs:

- PostgreSQL: `REPEATABLE READ, READ ONLY`, `statement_timeout`, session time zone UTC,
  `standard_conforming_strings` on (so the server lexes strings as the statement check
  did). psycopg prepares every statement (`prepare_threshold=0`): nothing goes through
  the simple query protocol, so a string holding two statements is refused by the server.
- SQLite: the file opened with `mode=ro` and `PRAGMA query_only`; an explicit `BEGIN`
  so the count and the rows read one snapshot (WAL); the timeout interrupts a statement
  through a progress handler. sqlite3 runs one statement per call.
- MySQL/MariaDB (pymysql): `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` and
  `max_statement_time` (MariaDB) / `max_execution_time` (MySQL); the connection never
  has `CLIENT.MULTI_STATEMENTS` (even when the URL asks for it) and the session's
  `sql_mode` loses `NO_BACKSLASH_ESCAPES` (strings lex as the statement check did).

Driver errors are translated to `PermanentError`/`RetryableError` with stable codes."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from exportd.errors import JobFailure, PermanentError, RetryableError


def engine_url(url: str) -> sa.URL:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in ("postgres", "postgresql"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend in ("mysql", "mariadb"):
        return parsed.set(drivername=f"{backend}+pymysql")
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            return parsed.set(database=f"file:{database}", query={"mode": "ro", "uri": "true"})
        return parsed
    raise PermanentError(f"unsupported SQL source {backend!r}", code="invalid_sources")


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def reset(self) -> None:
        self.at = time.monotonic() + self.seconds

    def passed(self) -> int:
        return 1 if time.monotonic() > self.at else 0


def _sqlite_engine(url: sa.URL, deadline: _Deadline) -> Engine:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, record: Any) -> None:
        dbapi.isolation_level = None  # we issue BEGIN ourselves
        dbapi.execute("PRAGMA query_only = ON")
        dbapi.set_progress_handler(deadline.passed, 10_000)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


def _mysql_engine(url: sa.URL, **kw: Any) -> Engine:
    from pymysql.constants import CLIENT  # type: ignore[import-untyped]

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, **kw)

    @event.listens_for(engine, "do_connect")
    def _single_statements(dialect: Any, record: Any, cargs: Any, cparams: Any) -> None:
        cparams["client_flag"] = int(cparams.get("client_flag", 0)) & ~CLIENT.MULTI_STATEMENTS

    return engine


def source_engine(url: str, deadline: _Deadline, **connect_args: Any) -> Engine:
    """An engine on a source with the driver settings of the module doc (no pool)."""
    target = engine_url(url)
    backend = target.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(target, deadline)
    if backend == "postgresql":
        args = {"prepare_threshold": 0, **connect_args}
        return sa.create_engine(target, poolclass=sa.pool.NullPool, connect_args=args)
    return _mysql_engine(target, connect_args=connect_args)


@contextlib.contextmanager
def snapshot(url: str, timeout: float) -> Iterator[tuple[Connection, _Deadline]]:
    """A read-only connection in one consistent-snapshot transaction, rolled back at
    the end. The deadline is the statement timeout; `reset` it before each fetch."""
    deadline = _Deadline(timeout)
    engine = source_engine(url, deadline)
    backend = engine.url.get_backend_name()
    try:
        with translate_errors(), engine.connect() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
                conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
                conn.exec_driver_sql("SET LOCAL standard_conforming_strings = on")
            elif backend in ("mysql", "mariadb"):
                _mysql_begin(conn, timeout)
            conn.exec_driver_sql("SELECT 1").all()  # takes the snapshot now
            try:
                yield conn, deadline
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def _mysql_begin(conn: Connection, timeout: float) -> None:
    for statement in (
        f"SET SESSION max_statement_time = {timeout:g}",
        f"SET SESSION max_execution_time = {int(timeout * 1000)}",
    ):
        with contextlib.suppress(sa.exc.DBAPIError):
            conn.exec_driver_sql(statement)
    conn.exec_driver_sql(
        "SET SESSION sql_mode = TRIM(BOTH ',' FROM REPLACE("
        "CONCAT(',', @@SESSION.sql_mode, ','), ',NO_BACKSLASH_ESCAPES,', ','))"
    )
    conn.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    # The session too, not only the transaction: DDL (DROP, CREATE, ALTER, TRUNCATE)
    # commits the open transaction implicitly and would then run in a fresh one that is
    # writable, unless every transaction of this session is read-only.
    conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
    conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")


READ_ONLY_STATES = {"25006"}
TIMEOUT_STATES = {"57014"}
MYSQL_READ_ONLY = {1792, 1290}
MYSQL_TIMEOUT = {1969, 3024}
SEVERAL_STATEMENTS = (
    "cannot insert multiple commands into a prepared statement",  # PostgreSQL
    "you can only execute one statement at a time",  # sqlite3
)


def several_statements(message: str) -> PermanentError | None:
    """The job's error when a driver refused a string holding several statements."""
    if not any(words in message.lower() for words in SEVERAL_STATEMENTS):
        return None
    return PermanentError(
        f"the SQL must be exactly one read statement: {message}", code="not_a_single_select"
    )


def classify_db_error(exc: sa.exc.DBAPIError) -> JobFailure:
    """A driver error as the job's error."""
    orig = exc.orig
    message = " ".join(str(orig).split())[:500]
    state = getattr(orig, "sqlstate", None)
    errno = orig.args[0] if orig is not None and orig.args else None
    text = message.lower()
    if (refused := several_statements(message)) is not None:
        return refused
    if state in READ_ONLY_STATES or errno in MYSQL_READ_ONLY or "readonly" in text:
        return PermanentError(f"the source is read-only here: {message}", code="read_only")
    if state in TIMEOUT_STATES or errno in MYSQL_TIMEOUT or "interrupted" in text:
        return PermanentError(f"the query ran too long: {message}", code="statement_timeout")
    if exc.connection_invalidated or isinstance(exc, sa.exc.InterfaceError):
        return RetryableError(f"the source is unavailable: {message}", code="source_unavailable")
    if isinstance(exc, sa.exc.OperationalError) and _transient(orig, state, text):
        return RetryableError(f"the source is unavailable: {message}", code="source_unavailable")
    return PermanentError(f"the query failed: {message}", code="query_failed")


def _transient(orig: Any, state: str | None, text: str) -> bool:
    if type(orig).__module__.startswith("sqlite3"):
        return any(word in text for word in ("unable to open", "locked", "busy"))
    return state is None or state.startswith(("08", "53", "57P"))


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise classify_db_error(exc) from exc
    except Exception as exc:
        # psycopg errors raised by the raw COPY path, outside SQLAlchemy. psycopg is not
        # imported for this: when it is not loaded, none of its errors can be raised.
        psycopg = sys.modules.get("psycopg")
        if psycopg is None or not isinstance(exc, psycopg.Error):
            raise
        wrapped = sa.exc.DBAPIError.instance(None, None, exc, psycopg.Error)
        assert isinstance(wrapped, sa.exc.DBAPIError)
        raise classify_db_error(wrapped) from exc


def superuser_role(url: str, connect_timeout: float = 3.0) -> str | None:
    """The role a PostgreSQL source connects as, when it is a superuser (else None).
    Raises `RetryableError(code="source_unavailable")` when the source cannot be reached."""
    engine = source_engine(url, _Deadline(connect_timeout), connect_timeout=int(connect_timeout))
    try:
        with translate_errors(), engine.connect() as conn:
            role, superuser = conn.exec_driver_sql(
                "SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user"
            ).one()
            conn.rollback()
    finally:
        engine.dispose()
    return str(role) if superuser else None


def planned_rows(plan: Any) -> int:
    """The row count in PostgreSQL's `EXPLAIN (FORMAT JSON)` output (text or parsed)."""
    if isinstance(plan, str | bytes):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
