"""`sql`: rows from a configured SQL source (see `sources` for the configuration).

Owners run *named* queries with typed, bound parameters; ad-hoc `sql` is for admin
tokens only (`authorize` refuses it for anyone else). Everything runs in one read-only,
consistent-snapshot transaction (`sql_session.snapshot`) with a statement timeout: the
row count and the rows see the same data whatever other connections commit meanwhile.

Every SQL text, ad-hoc or named, must be exactly one read statement
(`sql_statement.read_statement`, checked when the export is created and again when it
runs; `not_a_single_select` otherwise), and on PostgreSQL the server parses it alone
before any wrapper is put around it.

When the job writes one plain CSV file (`ctx.accepts_encoded("csv")`) from PostgreSQL,
the rows are produced by `COPY (query) TO STDOUT` instead and written as they arrive
(`sql_copy`, formula cells escaped unless the job turns it off). Every other PostgreSQL
export is read Arrow-native through ADBC when the driver is installed
(`sql_arrow`: the same snapshot, timeout, bound parameters and error codes). Otherwise
(SQLite, MySQL, or a parameter ADBC cannot bind), rows are streamed with a server-side
cursor in chunks of `EXPORTD_SQL_CHUNK_ROWS` and converted to Arrow record batches.

The total is an exact `count(*)` over the query in the same snapshot (a second scan),
unless the source says `count = "estimate"` (PostgreSQL's planner estimate, free but
approximate) or `count = "none"`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text
from sqlalchemy.engine import Connection

from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.exporters import sql_arrow
from exportd.exporters.registry import Encoded, ExportContext, exporter
from exportd.exporters.sources import get_source
from exportd.exporters.sql_copy import CopyPlan, bound_query, copy_csv, describe, plan_copy
from exportd.exporters.sql_session import _Deadline, planned_rows, snapshot
from exportd.exporters.sql_statement import dialect_of, read_statement
from exportd.formats.values import to_text


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
    """The source URL, the checked SQL (`sql_statement.read_statement`), its bound values
    and the source config."""
    source = get_source(ctx.settings, params.source)
    dialect = dialect_of(source.url)
    if params.sql is not None:
        return source.url, read_statement(params.sql, dialect), {}, source
    query = source.query(params.query or "")
    values = query.bind(params.params)
    return source.url, read_statement(query.sql, dialect), values, source


def check_sql(params: SqlParams, settings: Settings) -> None:
    """Refuse at creation what would fail at once when run: an unknown source or named
    query, query params that do not bind (their types), or SQL, ad-hoc or named, that is
    not exactly one read statement (`not_a_single_select`)."""
    source = get_source(settings, params.source)
    dialect = dialect_of(source.url)
    if params.query is not None:
        query = source.query(params.query)
        query.bind(params.params)
        read_statement(query.sql, dialect)
    else:
        read_statement(params.sql or "", dialect)


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
        postgres = conn.dialect.name == "postgresql"
        copy = postgres_copy(conn, statement, values, ctx) if postgres else None
        source.report_total(
            ctx,
            (lambda: estimate_rows(conn, statement, values)) if postgres else None,
            lambda: count_rows(conn, statement, values),
        )
        ctx.step("reading rows")
        if copy is not None:
            yield from copy_csv(conn, copy, ctx)
        else:
            yield from fetch_batches(conn, statement, values, ctx.settings.sql_chunk_rows, deadline)


def postgres_copy(
    conn: Connection, statement: str, values: dict[str, Any], ctx: ExportContext
) -> CopyPlan | None:
    """Have the server parse the bound statement alone (`sql_copy.describe`: one
    statement, whole), then the COPY to run when the job writes plain CSV."""
    query = bound_query(conn, statement, values)
    columns = describe(conn, query)
    if not ctx.accepts_encoded("csv"):
        return None
    return plan_copy(conn, query, columns, ctx.csv_formula_escape)


def estimate_rows(conn: Connection, statement: str, values: dict[str, Any]) -> int:
    """PostgreSQL's planner estimate of the rows `statement` returns (no scan)."""
    return planned_rows(
        conn.execute(text(f"EXPLAIN (FORMAT JSON)\n{statement}"), values).scalar_one()
    )


def count_rows(conn: Connection, statement: str, values: dict[str, Any]) -> int:
    wrapped = text(f"SELECT count(*) FROM (\n{statement}\n) AS exportd_count")
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
