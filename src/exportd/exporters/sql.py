"""`sql`: rows from a configured SQL source (see `sources` for the configuration).

Owners run *named* queries with typed, bound parameters; ad-hoc `sql` is for admin
tokens only (`authorize` refuses it for anyone else). Everything runs in one read-only,
consistent-snapshot transaction (`sql_session.snapshot`) with a statement timeout: the
row count and the rows see the same data whatever other connections commit meanwhile.

When the job writes one plain CSV file (`ctx.accepts_encoded("csv")`) from PostgreSQL,
the rows are produced by `COPY (query) TO STDOUT WITH
(FORMAT csv, HEADER)` instead and written as they arrive, without any conversion
(PostgreSQL's CSV spelling: `t`/`f`, timestamps like `2024-01-02 03:04:05+00`). Every
other PostgreSQL export is read Arrow-native through ADBC when the driver is installed
(`sql_arrow`: the same snapshot, timeout, bound parameters and error codes). Otherwise
(SQLite, MySQL, or a parameter ADBC cannot bind), rows are streamed with a server-side
cursor in chunks of `EXPORTD_SQL_CHUNK_ROWS` and converted to Arrow record batches.

The total is an exact `count(*)` over the query in the same snapshot (a second scan),
unless the source says `count = "estimate"` (PostgreSQL's planner estimate, free but
approximate) or `count = "none"`."""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.engine import Connection

from exportd.config import Settings
from exportd.errors import JobFailure, PermanentError, RetryableError
from exportd.exporters import sql_arrow
from exportd.exporters.registry import Encoded, ExportContext, exporter
from exportd.exporters.sources import get_source
from exportd.exporters.sql_session import (
    READ_ONLY_STATES,
    TIMEOUT_STATES,
    _Deadline,
    planned_rows,
    snapshot,
)
from exportd.formats.values import to_text

if TYPE_CHECKING:
    import psycopg


class SqlParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="a configured source name")
    query: str | None = Field(default=None, description="a named query of the source")
    params: dict[str, Any] = Field(default_factory=dict, description="the query's params")
    sql: str | None = Field(default=None, description="ad-hoc SQL (admin tokens only)")

    @model_validator(mode="after")
    def _one_of(self) -> SqlParams:
        if (self.query is None) == (self.sql is None):
            raise ValueError("give exactly one of `query` (a named query) or `sql`")
        if self.sql is not None and self.params:
            raise ValueError("ad-hoc `sql` takes no params")
        return self


def authorize_sql(params: SqlParams, admin: bool) -> None:
    """Ad-hoc SQL needs an admin token; named queries are open to every owner."""
    if params.sql is not None and not admin:
        raise PermanentError("ad-hoc SQL needs an admin token", code="forbidden")


def resolve(params: SqlParams, ctx: ExportContext) -> tuple[str, str, dict[str, Any], Any]:
    """The source URL, the SQL, its bound values and the source config."""
    source = get_source(ctx.settings, params.source)
    if params.sql is not None:
        return source.url, params.sql.strip().rstrip(";"), {}, source
    query = source.query(params.query or "")
    return source.url, query.sql.strip().rstrip(";"), query.bind(params.params), source


def check_sql(params: SqlParams, settings: Settings) -> None:
    """Refuse at creation what would fail at once when run: an unknown source or named
    query, or query params that do not bind (their types)."""
    source = get_source(settings, params.source)
    if params.query is not None:
        source.query(params.query).bind(params.params)


@exporter("sql", params=SqlParams, authorize=authorize_sql, check=check_sql)
def sql(params: SqlParams, ctx: ExportContext) -> Iterator[pa.RecordBatch | Encoded]:
    """Rows of a named (or, for admins, ad-hoc) query on a configured SQL source."""
    url, statement, values, source = resolve(params, ctx)
    timeout = source.statement_timeout or ctx.settings.sql_statement_timeout
    ctx.step(f"connecting to {params.source}")
    if sql_arrow.usable(url) and not ctx.accepts_encoded("csv"):
        try:
            yield from sql_arrow.export(url, statement, values, source, timeout, ctx)
            return
        except sql_arrow.Unsupported:
            pass  # raised before any row or total: read through SQLAlchemy instead
    with snapshot(url, timeout) as (conn, deadline):
        source.report_total(
            ctx,
            (lambda: estimate_rows(conn, statement, values))
            if conn.dialect.name == "postgresql"
            else None,
            lambda: count_rows(conn, statement, values),
        )
        ctx.step("reading rows")
        if conn.dialect.name == "postgresql" and ctx.accepts_encoded("csv"):
            yield from copy_csv(conn, statement, values, ctx)
        else:
            yield from fetch_batches(conn, statement, values, ctx.settings.sql_chunk_rows, deadline)


def estimate_rows(conn: Connection, statement: str, values: dict[str, Any]) -> int:
    """PostgreSQL's planner estimate of the rows `statement` returns (no scan)."""
    return planned_rows(
        conn.execute(text(f"EXPLAIN (FORMAT JSON) {statement}"), values).scalar_one()
    )


def count_rows(conn: Connection, statement: str, values: dict[str, Any]) -> int:
    wrapped = text(f"SELECT count(*) FROM ({statement}) AS exportd_count")
    return int(conn.execute(wrapped, values).scalar_one())


def fetch_batches(
    conn: Connection, statement: str, values: dict[str, Any], chunk: int, deadline: _Deadline
) -> Iterator[pa.RecordBatch]:
    deadline.reset()
    result = conn.execution_options(stream_results=True, yield_per=chunk).execute(
        text(statement), values
    )
    names = list(result.keys())
    schema: pa.Schema | None = None
    for rows in result.partitions(chunk):
        batch = to_batch(names, rows, schema)
        schema = schema or batch.schema
        yield batch
        deadline.reset()
    if schema is None:
        yield pa.RecordBatch.from_pydict({name: pa.array([], pa.string()) for name in names})


def to_batch(names: list[str], rows: Sequence[Any], schema: pa.Schema | None) -> pa.RecordBatch:
    """Rows as a record batch; the first batch fixes the schema (all-null columns become
    strings, decimals get precision 38) and later ones are cast to it."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [_array(list(values)) for values in columns]
    if schema is None:
        arrays = [_settle(array) for array in arrays]
        return pa.RecordBatch.from_arrays(arrays, names=names)
    return pa.RecordBatch.from_arrays(arrays, names=names).cast(schema)


def _array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return pa.array([None if v is None else to_text(v) for v in values], pa.string())


def _settle(array: pa.Array) -> pa.Array:
    if pa.types.is_null(array.type):
        return array.cast(pa.string())
    if pa.types.is_decimal(array.type) and array.type.scale <= 38:
        return array.cast(pa.decimal128(38, array.type.scale))
    return array


COPY_BLOCK = 1 << 20


def copy_csv(
    conn: Connection, statement: str, values: dict[str, Any], ctx: ExportContext
) -> Iterator[Encoded]:
    """PostgreSQL's `COPY … TO STDOUT` CSV, handed over in blocks of about 1 MiB.

    Read straight from libpq (`PQgetCopyData` in non-blocking mode, waiting on the
    socket in between), as `psql` does: psycopg's row-by-row COPY iterator costs several
    microseconds a row. The server sends one message per row (the header included), so
    rows are counted by message. COPY takes no server-side parameters: they are bound
    client-side by psycopg's own quoting."""
    # psycopg is imported by the paths that use it: a worker whose job store and sources
    # are not PostgreSQL never loads it (~9 MB).
    import psycopg
    from psycopg import pq

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    compiled = text(statement).compile(dialect=conn.dialect)
    query = psycopg.ClientCursor(raw).mogrify(str(compiled), compiled.construct_params(values))
    pgconn = raw.pgconn
    pgconn.send_query(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)".encode())
    finished = False
    try:
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            raise _result_error(result)
        yield from _copy_blocks(pgconn, ctx)
        _drain(pgconn)
        finished = True
    finally:
        if not finished:
            _abandon(raw)


def _copy_blocks(pgconn: Any, ctx: ExportContext) -> Iterator[Encoded]:
    block = bytearray()
    rows = -1  # the header is the first message
    read = pgconn.get_copy_data
    while True:
        size, data = read(1)
        if size > 0:
            block += data
            rows += 1
            if len(block) >= COPY_BLOCK:
                yield Encoded(bytes(block), rows)
                block.clear()
                rows = 0
                ctx.checkpoint()
        elif size == 0:
            select.select([pgconn.socket], [], [], 0.5)
            pgconn.consume_input()
            ctx.checkpoint()
        elif size == -1:
            break
        else:
            message = pgconn.get_error_message().decode(errors="replace").strip()
            raise RetryableError(f"the source is unavailable: {message}", code="source_unavailable")
    yield Encoded(bytes(block), max(rows, 0))


def _drain(pgconn: Any) -> None:
    from psycopg import pq

    while (result := pgconn.get_result()) is not None:
        if result.status != pq.ExecStatus.COMMAND_OK:
            raise _result_error(result)


def _result_error(result: Any) -> JobFailure:
    """A failed libpq result as the job's error (same codes as the cursor path)."""
    if result is None:
        return RetryableError("the source returned no result", code="source_unavailable")
    from psycopg import pq

    message = " ".join(result.error_message.decode(errors="replace").split())[:500]
    state = (result.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
    if state in READ_ONLY_STATES:
        return PermanentError(f"the source is read-only here: {message}", code="read_only")
    if state in TIMEOUT_STATES:
        return PermanentError(f"the query ran too long: {message}", code="statement_timeout")
    return PermanentError(f"the query failed: {message}", code="query_failed")


def _abandon(raw: psycopg.Connection[Any]) -> None:
    """Stop a COPY we will not read to its end (cancelled export, error)."""
    with contextlib.suppress(Exception):
        raw.cancel_safe(timeout=5)
    with contextlib.suppress(Exception):
        while raw.pgconn.get_copy_data(0)[0] >= 0:
            pass
        while raw.pgconn.get_result() is not None:
            pass
