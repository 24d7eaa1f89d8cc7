"""Arrow-native reads from PostgreSQL through ADBC (`adbc_driver_postgresql`).

Used by the `sql` exporter for every PostgreSQL export that is not the plain-CSV COPY
path, when the driver is installed. The guarantees are those of `sql_session.snapshot`:

- One transaction, `REPEATABLE READ, READ ONLY`, with `SET LOCAL statement_timeout`,
  `TimeZone = 'UTC'` and `standard_conforming_strings = on`, set on the ADBC
  connection before its first query (the DBAPI layer opens the transaction at connect:
  autocommit is off). The count (or planner estimate)
  and the rows are read in it.
- Parameters are bound server-side (`$1`, `$2`, … from SQLAlchemy's `numeric_dollar`
  compilation of the named query). Their types are PostgreSQL's own: the statement is
  prepared untyped first and each value is converted to the Arrow type matching the type
  the server inferred. When a value does not convert or the server cannot infer a type
  (or infers one ADBC cannot bind, e.g. an enum), `Unsupported` is raised before any row
  or total is produced and the exporter takes its SQLAlchemy path instead.
- Rows stream in record batches: without parameters, ADBC's binary `COPY (query) TO
  STDOUT` (the statement timeout covers the whole read, as in the CSV COPY path); with
  parameters (COPY takes none, and ADBC would buffer a parameterised result whole), a
  `NO SCROLL` cursor read with `FETCH FORWARD chunk` (the timeout applies per fetch).
- The driver sends every statement through the extended protocol and prepares the
  query alone before its own `COPY (query)` wrapper, so the server refuses a text
  holding several statements (`not_a_single_select`) or one that would close the
  parenthesis early (a syntax error), whatever the statement check let through.
- While waiting on the server, a helper thread calls `ctx.checkpoint()` every 0.25 s and
  cancels the server statement when the job must stop; an abandoned read is cancelled
  too, so no query keeps running on the server.

Types: PostgreSQL `numeric(p, s)` (p ≤ 38) becomes `decimal128(p, s)` from the column's
type modifier; an unconstrained `numeric` becomes `decimal128(38, s)` with `s` the
largest scale in the first batch (a later value that does not fit fails the job with
`query_failed`: declare the column as `numeric(p, s)` in the query), or text when the
first batch has no value or one that no decimal128 holds (NaN, Infinity, > 38 digits).
`uuid` and the types ADBC passes as opaque text keep PostgreSQL's text spelling."""

from __future__ import annotations

import contextlib
import decimal
import importlib.util
import threading
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import text
from sqlalchemy.engine import make_url

from exportd.errors import JobFailure, PermanentError, RetryableError
from exportd.exporters.registry import ExportContext
from exportd.exporters.sources import Source
from exportd.exporters.sql_session import (
    READ_ONLY_STATES,
    TIMEOUT_STATES,
    planned_rows,
    several_statements,
)

DRIVER = "adbc_driver_postgresql"
T = TypeVar("T")
NO_COPY = {"adbc.postgresql.use_copy": "false"}
CURSOR = "exportd_rows"
WATCH_SECONDS = 0.25


class Unsupported(Exception):
    """This export cannot be read through ADBC; nothing has been produced yet."""


@cache
def installed() -> bool:
    """The driver is installed (looked up without importing it)."""
    return importlib.util.find_spec(DRIVER) is not None


def usable(url: str) -> bool:
    """ADBC is installed and the source is PostgreSQL."""
    backend = make_url(url).get_backend_name()
    return backend in ("postgres", "postgresql") and installed()


def libpq_uri(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def compile_statement(statement: str, values: dict[str, Any]) -> tuple[str, list[Any]]:
    """The statement with `$n` placeholders and its values in that order."""
    from sqlalchemy.dialects import postgresql  # only this path compiles for PostgreSQL

    dialect = postgresql.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    compiled = text(statement).compile(dialect=dialect)
    bound = compiled.construct_params(values)
    return str(compiled), [bound[name] for name in compiled.positiontup or []]


def export(
    url: str,
    statement: str,
    values: dict[str, Any],
    source: Source,
    timeout: float,
    ctx: ExportContext,
) -> Iterator[pa.RecordBatch]:
    """The `sql` exporter's rows (and total) read through ADBC; see the module doc."""
    query, ordered = compile_statement(statement, values)
    with session(url, timeout) as conn:
        params = bind(conn, query, ordered)
        source.report_total(
            ctx,
            lambda: estimate_rows(conn, query, params),
            lambda: count_rows(conn, query, params),
        )
        ctx.step("reading rows")
        if params is None:
            yield from copy_batches(conn, query, ctx)
        else:
            yield from cursor_batches(conn, query, params, ctx.settings.sql_chunk_rows, ctx)


@contextlib.contextmanager
def session(url: str, timeout: float) -> Iterator[Any]:
    """An ADBC connection inside one read-only REPEATABLE READ transaction, rolled back
    and closed at the end."""
    # Imported here: the driver and what it loads (pyarrow.dataset, pandas when
    # installed) take ~37 MB, which a worker that never runs this path should not hold.
    try:
        import adbc_driver_postgresql.dbapi as adbc  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the driver is a dependency
        raise Unsupported(f"the ADBC driver cannot be loaded: {exc}") from exc
    try:
        conn = adbc.connect(libpq_uri(url))
    except Exception as exc:
        raise _failure(exc, connecting=True) from exc
    try:
        with translate(), conn.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
            cursor.execute("SET LOCAL TimeZone = 'UTC'")
            cursor.execute("SET LOCAL standard_conforming_strings = on")
            cursor.execute("SELECT 1")  # takes the snapshot now
            cursor.fetchall()
        yield conn
    finally:
        with contextlib.suppress(Exception):
            conn.rollback()
        with contextlib.suppress(Exception):
            conn.close()


def _cursor(conn: Any, copy: bool = False) -> Any:
    cursor = conn.cursor()
    if not copy:
        cursor.adbc_statement.set_options(**NO_COPY)
    return cursor


def bind(conn: Any, query: str, values: list[Any]) -> pa.RecordBatch | None:
    """The values as one row of Arrow arrays typed as PostgreSQL infers the parameters."""
    if not values:
        return None
    with _cursor(conn) as cursor:
        try:
            schema = cursor.adbc_prepare(query)
        except Exception as exc:  # cannot infer a type: the SQLAlchemy path decides
            raise Unsupported(str(exc)) from exc
    if schema is None or len(schema) != len(values):
        raise Unsupported("the parameters could not be described")
    arrays = [_param(value, field.type) for value, field in zip(values, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, names=[f"p{i}" for i in range(len(arrays))])


def _param(value: Any, kind: pa.DataType) -> pa.Array:
    try:
        if isinstance(kind, pa.BaseExtensionType):
            name = getattr(kind, "type_name", None) or kind.extension_name
            if name == "numeric":
                number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(value)
                exponent = number.as_tuple().exponent
                scale = max(0, -exponent) if isinstance(exponent, int) else 0
                return pa.array([number], pa.decimal128(38, scale))
            if name == "arrow.uuid":
                raw = value.bytes if isinstance(value, uuid.UUID) else uuid.UUID(value).bytes
                return pa.array([raw], pa.uuid())
            raise Unsupported(f"cannot bind a parameter of type {name}")
        return pa.array([value], kind)
    except (pa.ArrowException, TypeError, ValueError, decimal.InvalidOperation) as exc:
        raise Unsupported(f"cannot bind {value!r} as {kind}") from exc


def estimate_rows(conn: Any, query: str, params: pa.RecordBatch | None) -> int:
    """PostgreSQL's planner estimate of the rows `query` returns (no scan)."""
    with translate(), _cursor(conn) as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON)\n{query}", parameters=params)
        return planned_rows(cursor.fetchone()[0])


def count_rows(conn: Any, query: str, params: pa.RecordBatch | None) -> int:
    with translate(), _cursor(conn) as cursor:
        wrapped = f"SELECT count(*) FROM (\n{query}\n) AS exportd_count"
        cursor.execute(wrapped, parameters=params)
        return int(cursor.fetchone()[0])


def copy_batches(conn: Any, query: str, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Rows of a statement without parameters, from ADBC's binary COPY."""
    with _cursor(conn, copy=True) as cursor:
        watch = Watch(ctx, cursor)
        reader: pa.RecordBatchReader | None = None
        finished = False
        try:
            with translate():
                watch.wait(lambda: cursor.execute(query))
                reader = watch.wait(cursor.fetch_record_batch)
            convert = Converter(reader.schema)
            empty = True
            while True:
                with translate():
                    batch = watch.wait(lambda: _next(reader))
                if batch is None:
                    break
                empty = False
                yield convert(batch)
                ctx.checkpoint()
            if empty:
                yield convert(_empty(reader.schema))
            finished = True
        finally:
            watch.close(cancel=not finished)  # cancel first: closing drains the COPY
            if reader is not None:
                reader.close()


def cursor_batches(
    conn: Any, query: str, params: pa.RecordBatch, chunk: int, ctx: ExportContext
) -> Iterator[pa.RecordBatch]:
    """Rows of a parameterised statement, `chunk` at a time from a server-side cursor."""
    with _cursor(conn) as cursor:
        watch = Watch(ctx, cursor)
        finished = False
        try:
            with translate():
                declare = f"DECLARE {CURSOR} NO SCROLL CURSOR FOR\n{query}"
                watch.wait(lambda: cursor.execute(declare, parameters=params))
            convert: Converter | None = None
            while True:
                with translate():
                    watch.wait(lambda: cursor.execute(f"FETCH FORWARD {int(chunk)} FROM {CURSOR}"))
                    table = watch.wait(cursor.fetch_arrow_table)
                first = convert is None
                convert = convert or Converter(table.schema)
                batches = table.to_batches() or [_empty(table.schema)]
                for batch in batches:
                    if batch.num_rows or (first and table.num_rows == 0):
                        yield convert(batch)
                ctx.checkpoint()
                if table.num_rows < chunk:
                    break
            finished = True
        finally:
            watch.close(cancel=not finished)


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def _next(reader: pa.RecordBatchReader) -> pa.RecordBatch | None:
    try:
        return reader.read_next_batch()
    except StopIteration:
        return None


class Watch:
    """Runs blocking ADBC calls while a helper thread calls `ctx.checkpoint()` every
    0.25 s; when it raises (the job must stop), the server statement is cancelled and the
    blocked call re-raises the checkpoint's exception. The context is only touched by one
    thread at a time: the helper checkpoints only while the caller is blocked."""

    def __init__(self, ctx: ExportContext, cursor: Any) -> None:
        self.ctx = ctx
        self.cursor = cursor
        self.error: BaseException | None = None
        self._busy = threading.Lock()  # held by the caller whenever it is not blocked
        self._busy.acquire()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exportd-sql-watch", daemon=True)
        self._thread.start()

    def wait(self, call: Callable[[], T]) -> T:
        self._busy.release()
        try:
            result = call()
        except Exception as exc:
            self._busy.acquire()
            if self.error is not None:
                raise self.error from exc
            raise
        self._busy.acquire()
        if self.error is not None:
            raise self.error
        return result

    def _run(self) -> None:
        while not self._done.wait(WATCH_SECONDS):
            if not self._busy.acquire(blocking=False):
                continue
            try:
                self.ctx.checkpoint()
            except BaseException as exc:
                self.error = exc
                with contextlib.suppress(Exception):
                    self.cursor.adbc_cancel()
                return
            finally:
                self._busy.release()

    def close(self, cancel: bool) -> None:
        self._done.set()
        self._busy.release()
        self._thread.join()
        if cancel:  # an abandoned read: stop the server statement
            with contextlib.suppress(Exception):
                self.cursor.adbc_cancel()


class Converter:
    """ADBC's batches as exportd's types (see the module doc), field metadata dropped."""

    def __init__(self, schema: pa.Schema) -> None:
        self.names = schema.names
        self.fields = list(schema)
        self.types: list[pa.DataType | None] = [None] * len(self.fields)
        self.settled = False

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        columns = batch.columns
        if not self.settled:
            self.types = [_target(f, c) for f, c in zip(self.fields, columns, strict=True)]
            self.settled = True
        arrays = [
            _convert(name, column, kind)
            for name, column, kind in zip(self.names, columns, self.types, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, names=self.names)


def _target(field: pa.Field, column: pa.Array) -> pa.DataType | None:
    """The type a column becomes, or None to keep it as ADBC returns it."""
    metadata = field.metadata or {}
    numeric = metadata.get(b"POSTGRESQL:type") == b"numeric"
    if not numeric:
        return pa.string() if isinstance(field.type, pa.BaseExtensionType) else None
    typmod = int(metadata.get(b"POSTGRESQL:typmod", b"-1"))
    if typmod >= 4:
        precision, scale = (typmod - 4) >> 16, (typmod - 4) & 0xFFFF
        return pa.decimal128(precision, scale) if 0 < precision <= 38 else pa.string()
    storage = _storage(column)
    if storage.null_count == len(storage):
        return pa.string()
    dot = pc.find_substring(storage, ".")
    digits = pc.subtract(pc.subtract(pc.utf8_length(storage), dot), 1)
    scale = pc.max(pc.if_else(pc.less(dot, 0), 0, digits)).as_py() or 0
    if scale > 38:
        return pa.string()
    try:
        storage.cast(pa.decimal128(38, scale))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.string()
    return pa.decimal128(38, scale)


def _storage(column: pa.Array) -> pa.Array:
    return column.storage if isinstance(column.type, pa.BaseExtensionType) else column


def _convert(name: str, column: pa.Array, kind: pa.DataType | None) -> pa.Array:
    if kind is None:
        return column
    if getattr(column.type, "extension_name", "") == "arrow.uuid":
        values = [
            None if v is None else str(uuid.UUID(bytes=v)) for v in column.storage.to_pylist()
        ]
        return pa.array(values, pa.string())
    try:
        return _storage(column).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise PermanentError(
            f"column {name!r}: a value does not fit {kind} (taken from the first rows);"
            " cast the column to numeric(p, s) in the query",
            code="query_failed",
        ) from exc


@contextlib.contextmanager
def translate() -> Iterator[None]:
    """ADBC errors (and the reader's `OSError`s) as the job's errors."""
    try:
        yield
    except (JobFailure, Unsupported):
        raise
    except Exception as exc:
        if _is_driver_error(exc):
            raise _failure(exc) from exc
        raise


def _is_driver_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return isinstance(exc, OSError) or module.startswith(("adbc_driver", "pyarrow"))


LOST = (
    "server closed the connection",
    "terminating connection",
    "connection to server",
    "could not receive",
    "could not send",
)


def _failure(exc: BaseException, connecting: bool = False) -> JobFailure:
    message = " ".join(str(exc).split())[:500]
    state = getattr(exc, "sqlstate", None) or ""
    lowered = message.lower()
    if (refused := several_statements(message)) is not None:
        return refused
    if state in READ_ONLY_STATES or "read-only transaction" in lowered:
        return PermanentError(f"the source is read-only here: {message}", code="read_only")
    if state in TIMEOUT_STATES or "statement timeout" in lowered:
        return PermanentError(f"the query ran too long: {message}", code="statement_timeout")
    transient = state.startswith(("08", "53", "57P")) or (
        not state and (connecting or any(word in lowered for word in LOST))
    )
    if transient:
        return RetryableError(f"the source is unavailable: {message}", code="source_unavailable")
    return PermanentError(f"the query failed: {message}", code="query_failed")
