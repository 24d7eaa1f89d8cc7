"""PostgreSQL's `COPY (query) TO STDOUT` CSV: the `sql` exporter's fast path for jobs
that write one plain CSV file. The server's CSV is written as it arrives, without any
conversion (PostgreSQL's spelling: `t`/`f`, timestamps like `2024-01-02 03:04:05+00`).

Before anything else, `describe` has the server parse the exact query text that goes
inside the parentheses, alone, through the extended protocol: PostgreSQL's own lexer
then proves it is one statement and whole (a text that could close the parenthesis
early, `SELECT 1) TO PROGRAM '…' --`, does not parse alone), and tells each column's
type. COPY takes no parameters, so they are bound client-side by psycopg's quoting first.

With `csv_formula_escape` (the default), string-typed columns (every type but numbers,
booleans, dates, times and intervals) are listed in `FORCE_QUOTE`, so every string value
arrives quoted and `formats.text.neutralise_quoted_csv` can escape formula cells exactly
in one scan per block, leaving numbers such as `-5` alone; the header row is escaped by
`formats.text.escape_csv_header`. A query with two columns of the same name (which
`FORCE_QUOTE` cannot tell apart) is not copied: `plan_copy` returns None and the
exporter reads it through the cursor path instead."""

from __future__ import annotations

import contextlib
import select
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from exportd.errors import JobFailure, PermanentError, RetryableError
from exportd.exporters.registry import Encoded, ExportContext
from exportd.exporters.sql_session import READ_ONLY_STATES, TIMEOUT_STATES, several_statements
from exportd.formats.text import escape_csv_header, neutralise_quoted_csv

if TYPE_CHECKING:
    import psycopg

COPY_BLOCK = 1 << 20
UNQUOTED_TYPES = frozenset(
    {
        16,  # bool
        20,  # int8
        21,  # int2
        23,  # int4
        26,  # oid
        700,  # float4
        701,  # float8
        1700,  # numeric
        1082,  # date
        1083,  # time
        1114,  # timestamp
        1184,  # timestamptz
        1186,  # interval
        1266,  # timetz
    }
)
"""Types whose CSV text is never quoted by COPY and is not a string: a leading `-` there
is a negative number (or date, interval), never escaped."""


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int

    @property
    def string(self) -> bool:
        return self.type_oid not in UNQUOTED_TYPES


@dataclass(frozen=True)
class CopyPlan:
    """The COPY command to send and how to treat what it returns."""

    command: str
    escape: bool
    encoding: str


def bound_query(conn: Connection, statement: str, values: dict[str, Any]) -> str:
    """The statement with its values bound client-side (psycopg's quoting)."""
    import psycopg

    raw = driver(conn)
    compiled = text(statement).compile(dialect=conn.dialect)
    return psycopg.ClientCursor(raw).mogrify(str(compiled), compiled.construct_params(values))


def driver(conn: Connection) -> psycopg.Connection[Any]:
    # psycopg is imported by the paths that use it: a worker whose job store and sources
    # are not PostgreSQL never loads it (~9 MB).
    import psycopg

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def describe(conn: Connection, query: str) -> list[Column]:
    """The columns of `query`, parsed alone by the server (extended protocol, unnamed
    statement): refused with `not_a_single_select` when it holds several statements,
    `query_failed` when it does not parse."""
    from psycopg import pq

    raw = driver(conn)
    encoding = raw.info.encoding
    parsed = raw.pgconn.prepare(b"", query.encode(encoding))
    if parsed.status != pq.ExecStatus.COMMAND_OK:
        raise _result_error(parsed)
    described = raw.pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        raise _result_error(described)
    return [
        Column((described.fname(i) or b"").decode(encoding), described.ftype(i))
        for i in range(described.nfields)
    ]


def plan_copy(conn: Connection, query: str, columns: list[Column], escape: bool) -> CopyPlan | None:
    """The COPY for `query` (see the module doc), or None when it cannot be escaped."""
    options = "FORMAT csv, HEADER"
    strings = [column.name for column in columns if column.string]
    if escape and strings:
        counts = Counter(column.name for column in columns)
        if any(counts[name] > 1 for name in strings):
            return None
        quoted = ", ".join('"' + name.replace('"', '""') + '"' for name in strings)
        options += f", FORCE_QUOTE ({quoted})"
    command = f"COPY (\n{query}\n) TO STDOUT WITH ({options})"
    return CopyPlan(command, escape, driver(conn).info.encoding)


def copy_csv(conn: Connection, plan: CopyPlan, ctx: ExportContext) -> Iterator[Encoded]:
    """PostgreSQL's `COPY … TO STDOUT` CSV, handed over in blocks of about 1 MiB.

    Read straight from libpq (`PQgetCopyData` in non-blocking mode, waiting on the
    socket in between), as `psql` does: psycopg's row-by-row COPY iterator costs several
    microseconds a row. The server sends one message per row (the header included), so
    rows are counted by message, and a block always ends at the end of a row. The
    command goes through the extended protocol (`PQsendQueryParams`), which runs one
    statement at most."""
    from psycopg import pq

    raw = driver(conn)
    pgconn = raw.pgconn
    pgconn.send_query_params(plan.command.encode(plan.encoding), None)
    finished = False
    try:
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            raise _result_error(result)
        header = _first_message(pgconn, ctx)
        if header is not None:
            if plan.escape:
                header = escape_csv_header(header, plan.encoding)
            finish: Callable[[bytes], bytes] = neutralise_quoted_csv if plan.escape else bytes
            yield from _copy_blocks(pgconn, ctx, header, finish)
        _drain(pgconn)
        finished = True
    finally:
        if not finished:
            _abandon(raw)


def _first_message(pgconn: Any, ctx: ExportContext) -> bytes | None:
    while True:
        size, data = pgconn.get_copy_data(1)
        if size > 0:
            return bytes(data)
        if size == -1:
            return None
        if size < -1:
            raise _lost(pgconn)
        _wait(pgconn, ctx)


def _copy_blocks(
    pgconn: Any, ctx: ExportContext, header: bytes, finish: Callable[[bytes], bytes]
) -> Iterator[Encoded]:
    block = bytearray(header)
    rows = 0
    read = pgconn.get_copy_data
    while True:
        size, data = read(1)
        if size > 0:
            block += data
            rows += 1
            if len(block) >= COPY_BLOCK:
                yield Encoded(finish(bytes(block)), rows)
                block.clear()
                rows = 0
                ctx.checkpoint()
        elif size == 0:
            _wait(pgconn, ctx)
        elif size == -1:
            break
        else:
            raise _lost(pgconn)
    yield Encoded(finish(bytes(block)), rows)


def _wait(pgconn: Any, ctx: ExportContext) -> None:
    select.select([pgconn.socket], [], [], 0.5)
    pgconn.consume_input()
    ctx.checkpoint()


def _lost(pgconn: Any) -> RetryableError:
    message = pgconn.get_error_message().decode(errors="replace").strip()
    return RetryableError(f"the source is unavailable: {message}", code="source_unavailable")


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
    if (refused := several_statements(message)) is not None:
        return refused
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
