"""The `sql` exporter against real SQLite files and the real PostgreSQL: named queries,
authorization, read-only enforcement, the COPY fast path and snapshot consistency."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import sqlalchemy as sa
from sql_sources import (
    QUERIES,
    Ctx,
    fill,
    mysql_source,
    order_rows,
    pg_source,
    source_url,
    sources_json,
    writable,
)

from conftest import wait_for, wait_for_status
from exportd.config import Settings
from exportd.errors import ExportCancelled, PermanentError
from exportd.exporters import Encoded
from exportd.exporters.sql import SqlParams, authorize_sql, sql
from exportd.exporters.sql_session import snapshot
from exportd.formats import HashingSink, Stream
from exportd.formats.text import CsvWriter
from exportd.formats.values import json_default
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime

__all__ = ["mysql_source", "pg_source", "source_url"]


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite; the *sources* vary."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def run_job(runtime: Runtime, params: dict[str, Any], **kw: Any) -> Any:
    job = runtime.store.enqueue(NewJob(owner="alice", exporter="sql", params=params, **kw))
    runtime.start_worker(concurrency=1)
    return wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)


def read_artifact(runtime: Runtime, job: Any) -> bytes:
    (artifact,) = job.artifacts
    with runtime.storage.open_read(artifact.storage_key) as handle:
        data: bytes = handle.read()
    return data


def direct(url: str, statement: str, **values: Any) -> list[dict[str, Any]]:
    engine = writable(url)
    with engine.connect() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.text(statement), values)]
    engine.dispose()
    return rows


def test_named_query_with_params_runs_end_to_end(
    make_runtime: Callable[..., Runtime], source_url: str
) -> None:
    """A named query with typed, bound params exports exactly the rows the database
    returns for them, with the count as the total."""
    runtime = make_runtime(sources=sources_json(source_url))
    params = {
        "source": "shop",
        "query": "by_status",
        "params": {"status": "paid", "since": "2024-01-11"},
    }
    done = run_job(runtime, params, format="ndjson")
    assert done.status == Status.COMPLETED, done.error
    got = [json.loads(line) for line in read_artifact(runtime, done).splitlines()]
    expected = direct(
        source_url, "SELECT * FROM orders WHERE status = 'paid' AND day >= '2024-01-11' ORDER BY id"
    )
    assert got == json.loads(orjson.dumps(expected, default=json_default))
    assert len(got) == 25
    assert (done.progress.done, done.progress.total) == (25, 25)


def test_bad_query_params_fail_permanently(
    make_runtime: Callable[..., Runtime], tmp_path: Path
) -> None:
    """A param of the wrong type fails the job at once with invalid_params."""
    runtime = make_runtime(sources=sources_json(f"sqlite:///{tmp_path / 'none.db'}"))
    params = {"source": "shop", "query": "by_status", "params": {"status": "x", "since": "soon"}}
    done = run_job(runtime, params)
    assert done.error is not None
    assert (done.status, done.error.code, done.attempt) == (Status.FAILED, "invalid_params", 1)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"source": "nowhere", "query": "all"}, "unknown_source"),
        ({"source": "shop", "query": "nothing"}, "unknown_query"),
    ],
)
def test_unknown_names_are_refused(tmp_path: Path, params: dict[str, Any], code: str) -> None:
    """An unknown source or query fails with its own code before any connection."""
    settings = Settings(sources=sources_json(f"sqlite:///{tmp_path / 'none.db'}"))
    with pytest.raises(PermanentError) as caught:
        list(sql(SqlParams(**params), Ctx(settings)))
    assert caught.value.code == code


def test_ad_hoc_sql_needs_an_admin() -> None:
    """authorize refuses ad-hoc SQL for owners (forbidden) and lets admins and named
    queries through."""
    adhoc = SqlParams(source="shop", sql="SELECT 1")
    with pytest.raises(PermanentError) as caught:
        authorize_sql(adhoc, False)
    assert caught.value.code == "forbidden"
    authorize_sql(adhoc, True)
    authorize_sql(SqlParams(source="shop", query="all"), False)


@pytest.mark.parametrize("statement", ["DELETE FROM orders", "DROP TABLE orders"])
def test_admin_writes_fail_the_job_before_reaching_the_source(
    make_runtime: Callable[..., Runtime], source_url: str, statement: str
) -> None:
    """An admin's DELETE or DROP that reaches a worker fails the job permanently with
    not_a_single_select, and the data stays intact."""
    runtime = make_runtime(sources=sources_json(source_url))
    params = {"source": "shop_nocount", "sql": statement}
    done = run_job(runtime, params, format="ndjson", max_attempts=3)
    assert done.error is not None
    assert (done.status, done.error.retryable, done.attempt) == (Status.FAILED, False, 1)
    assert done.error.code == "not_a_single_select"
    assert len(direct(source_url, "SELECT id FROM orders")) == 60


@pytest.mark.parametrize(
    "statement", ["DELETE FROM orders", "DROP TABLE orders", "UPDATE orders SET note = 'x'"]
)
def test_the_snapshot_transaction_refuses_writes(source_url: str, statement: str) -> None:
    """Inside the export's session, a write statement run as it is fails with read_only."""
    with pytest.raises(PermanentError) as caught, snapshot(source_url, 10.0) as (conn, _):
        conn.exec_driver_sql(statement)
    assert caught.value.code == "read_only"
    assert len(direct(source_url, "SELECT id FROM orders WHERE note = 'x'")) == 0
    assert len(direct(source_url, "SELECT id FROM orders")) == 60


def copy_and_cursor(url: str) -> tuple[bytes, bytes, list[Any]]:
    settings = Settings(sources=sources_json(url), sql_chunk_rows=7)
    params = SqlParams(source="shop", query="all")
    copied = list(sql(params, Ctx(settings, encoded="csv")))
    batches = list(sql(params, Ctx(settings)))
    buffer = io.BytesIO()
    writer = CsvWriter(Stream(HashingSink(buffer)))
    for batch in batches:
        writer.write(batch)
    writer.close()
    return b"".join(c.data for c in copied), buffer.getvalue(), copied


@pytest.mark.postgres
def test_copy_fast_path_and_cursor_path_give_the_same_rows(pg_source: str) -> None:
    """PostgreSQL's COPY CSV and the cursor path's Arrow CSV parse to the same table, and
    the COPY chunks count every row exactly once."""
    copied, written, chunks = copy_and_cursor(pg_source)
    assert all(isinstance(chunk, Encoded) for chunk in chunks)
    assert sum(chunk.rows for chunk in chunks) == 60
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("amount", pa.decimal128(20, 2)),
            ("day", pa.date32()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("paid", pa.bool_()),
            ("status", pa.string()),
            ("note", pa.string()),
        ]
    )
    options = pacsv.ConvertOptions(
        column_types=schema, true_values=["t", "true"], false_values=["f", "false"]
    )
    parse = pacsv.ParseOptions(newlines_in_values=True)
    fast = pacsv.read_csv(io.BytesIO(copied), parse_options=parse, convert_options=options)
    slow = pacsv.read_csv(io.BytesIO(written), parse_options=parse, convert_options=options)
    assert fast.num_rows == 60
    assert fast.equals(slow)


@pytest.mark.postgres
def test_a_csv_job_on_postgres_takes_the_copy_path(
    make_runtime: Callable[..., Runtime], pg_source: str
) -> None:
    """Through a worker, a plain CSV job is written from COPY (PostgreSQL's `t`/`f`
    spelling) with the exact row count."""
    runtime = make_runtime(sources=sources_json(pg_source))
    done = run_job(runtime, {"source": "shop", "query": "all"}, compression="gzip")
    assert done.status == Status.COMPLETED, done.error
    import gzip

    text = gzip.decompress(read_artifact(runtime, done)).decode()
    assert text.startswith("id,amount,day,at,paid,status,note\n")
    assert ',t,"paid",' in text  # string columns are quoted (FORCE_QUOTE) for the escaping
    assert done.artifacts[0].rows == 60


def test_copy_blocks_count_rows_exactly(
    pg_source: str, make_runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cut into many tiny blocks, the COPY path still writes the same bytes and counts
    every row once, quoted newlines included."""
    runtime = make_runtime(sources=sources_json(pg_source))
    whole = read_artifact(runtime, run_job(runtime, {"source": "shop", "query": "all"}))
    monkeypatch.setattr("exportd.exporters.sql_copy.COPY_BLOCK", 64)
    done = run_job(runtime, {"source": "shop", "query": "all"})
    assert read_artifact(runtime, done) == whole
    assert done.artifacts[0].rows == 60
    assert b"new\nline" in whole


def test_concurrent_writes_do_not_change_the_snapshot(source_url: str) -> None:
    """Rows deleted and inserted by another connection while the export is half read do
    not show up: the count and every row come from the snapshot taken at the start."""
    settings = Settings(sources=sources_json(source_url), sql_chunk_rows=5)
    ctx = Ctx(settings, fmt="ndjson")
    rows = sql(SqlParams(source="shop", query="all"), ctx)
    first = next(rows)
    engine = writable(source_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE id < 40"))
        conn.execute(sa.text("INSERT INTO orders (id, status) VALUES (-1, 'new')"))
    engine.dispose()
    table = pa.Table.from_batches([first, *rows])
    assert ctx.total == 60
    assert table.num_rows == 60
    assert -1 not in table.column("id").to_pylist()
    now = [row["id"] for row in direct(source_url, "SELECT id FROM orders")]
    assert -1 in now
    assert len(now) == 60 - 26 + 1  # the other connection's changes did commit


def test_copy_path_honours_the_statement_timeout(pg_source: str, make_runtime: Any) -> None:
    """A CSV export whose query outlives the statement timeout fails with statement_timeout."""
    runtime = make_runtime(sources=sources_json(pg_source, statement_timeout=0.3))
    params = {"source": "shop", "sql": "SELECT pg_sleep(3) AS slept"}
    done = run_job(runtime, params)
    assert done.status == Status.FAILED
    assert done.error is not None and done.error.code == "statement_timeout"


def test_cancel_during_copy_stops_the_server_query(pg_source: str, make_runtime: Any) -> None:
    """Cancelling a CSV export mid-COPY ends the job at once and the server query with it."""
    runtime = make_runtime(sources=sources_json(pg_source))
    slow = "SELECT g, pg_sleep(0.001) FROM generate_series(1, 100000) AS g"
    job = runtime.store.enqueue(
        NewJob(owner="alice", exporter="sql", params={"source": "shop", "sql": slow})
    )
    runtime.start_worker(concurrency=1)
    wait_for_status(runtime.store, job.id, Status.RUNNING)
    time.sleep(0.5)
    runtime.store.request_cancel(job.id)
    done = wait_for_status(runtime.store, job.id, Status.CANCELLED, Status.COMPLETED, timeout=10)
    assert done.status == Status.CANCELLED

    def no_copy_running() -> bool:
        active = direct(
            pg_source,
            "SELECT count(*) AS n FROM pg_stat_activity"
            " WHERE query LIKE 'COPY (SELECT g, pg_sleep%' AND state = 'active'",
        )
        return active[0]["n"] == 0

    wait_for(no_copy_running, timeout=10, what="the server-side COPY to stop")


# -- the Arrow-native (ADBC) path on PostgreSQL ---------------------------------------------

ADBC_QUERIES = {
    **QUERIES,
    "from_id": {
        "sql": "SELECT * FROM orders WHERE id >= :low ORDER BY id",
        "params": {"low": "int"},
    },
    "hostile": {"sql": "SELECT * FROM orders WHERE status = :status", "params": {"status": "str"}},
    "untyped": {
        "sql": "SELECT :label AS label, id FROM orders ORDER BY id",
        "params": {"label": "str"},
    },
    "slow": {
        "sql": "SELECT g, pg_sleep(0.002) FROM generate_series(1, :n) AS g",
        "params": {"n": "int"},
    },
}


@pytest.fixture
def pg_orders(pg_source: str) -> str:
    """The PostgreSQL source with its 60 `orders` rows restored."""
    fill(pg_source.replace("postgresql://", "postgresql+psycopg://", 1), order_rows())
    return pg_source


def adbc_settings(url: str, **extra: Any) -> Settings:
    sources = {"shop": {"url": url, "queries": ADBC_QUERIES, "count": "none", **extra}}
    return Settings(sources=json.dumps(sources), sql_chunk_rows=7)


def read_table(settings: Settings, params: SqlParams, fmt: str = "parquet") -> pa.Table:
    ctx = Ctx(settings, fmt=fmt)
    batches = list(sql(params, ctx))
    assert all(isinstance(batch, pa.RecordBatch) for batch in batches)
    return pa.Table.from_batches(batches)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "params",
    [
        SqlParams(source="shop", query="all"),
        SqlParams(source="shop", query="from_id", params={"low": -1}),
    ],
)
def test_adbc_path_gives_the_same_values_as_the_sqlalchemy_path(
    pg_orders: str, params: SqlParams, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ADBC (COPY without params, a bound cursor with them) every value — ids
    above 2^53, numeric(20, 2) as decimal128(20, 2), dates, UTC timestamps, booleans,
    unicode, nulls — equals what the SQLAlchemy path reads."""
    settings = adbc_settings(pg_orders)
    fast = read_table(settings, params)
    monkeypatch.setattr("exportd.exporters.sql_arrow.usable", lambda url: False)
    slow = read_table(settings, params)
    assert fast.num_rows == 60
    assert fast.schema.field("amount").type == pa.decimal128(20, 2)
    assert fast.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert fast.schema.field("id").type == pa.int64()
    assert fast.to_pylist() == slow.to_pylist()
    assert 2**53 + 7 in fast.column("id").to_pylist()


@pytest.mark.postgres
def test_adbc_params_are_bound_not_interpolated(pg_orders: str) -> None:
    """A hostile string param is compared as a value (no rows), never spliced into SQL."""
    settings = adbc_settings(pg_orders)
    params = SqlParams(source="shop", query="hostile", params={"status": "x' OR '1'='1"})
    table = read_table(settings, params)
    assert table.num_rows == 0
    assert table.column_names == ["id", "amount", "day", "at", "paid", "status", "note"]
    assert len(direct(pg_orders, "SELECT id FROM orders")) == 60


@pytest.mark.postgres
def test_a_param_adbc_cannot_type_falls_back_to_sqlalchemy(pg_orders: str) -> None:
    """A param PostgreSQL cannot type on its own (`SELECT :label`) is still exported,
    through the SQLAlchemy path."""
    settings = adbc_settings(pg_orders)
    params = SqlParams(source="shop", query="untyped", params={"label": "hi"})
    table = read_table(settings, params, fmt="ndjson")
    assert table.num_rows == 60
    assert set(table.column("label").to_pylist()) == {"hi"}


@pytest.mark.postgres
def test_unconstrained_numeric_takes_the_scale_of_the_first_rows(pg_orders: str) -> None:
    """A plain `numeric` column becomes decimal128(38, s) with the first batch's scale;
    NaN, which no decimal holds, keeps PostgreSQL's text."""
    settings = adbc_settings(pg_orders)
    adhoc = "SELECT amount::numeric AS a, 'NaN'::numeric AS nan, NULL::numeric AS none FROM orders"
    table = read_table(settings, SqlParams(source="shop", sql=adhoc))
    assert table.schema.field("a").type == pa.decimal128(38, 2)
    assert table.schema.field("nan").type == pa.string()
    assert table.schema.field("none").type == pa.string()
    expected = [row["amount"] for row in direct(pg_orders, "SELECT amount FROM orders")]
    assert table.column("a").to_pylist() == expected


@pytest.mark.postgres
@pytest.mark.parametrize("query", ["all", "from_id"])
def test_adbc_snapshot_ignores_concurrent_writes(pg_orders: str, query: str) -> None:
    """On the ADBC path too, the count and every row come from the snapshot taken at
    the start, whatever another connection commits while the export is half read."""
    fill(pg_orders.replace("postgresql://", "postgresql+psycopg://", 1), order_rows())
    sources = {"shop": {"url": pg_orders, "queries": ADBC_QUERIES}}
    settings = Settings(sources=json.dumps(sources), sql_chunk_rows=5)
    ctx = Ctx(settings, fmt="parquet")
    params = {"low": -100} if query == "from_id" else {}
    rows = sql(SqlParams(source="shop", query=query, params=params), ctx)
    first = next(rows)
    engine = writable(pg_orders)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM orders WHERE id < 40"))
        conn.execute(sa.text("INSERT INTO orders (id, status) VALUES (-1, 'new')"))
    engine.dispose()
    table = pa.Table.from_batches([first, *rows])
    fill(pg_orders.replace("postgresql://", "postgresql+psycopg://", 1), order_rows())
    assert ctx.total == 60
    assert table.num_rows == 60
    assert -1 not in table.column("id").to_pylist()


@pytest.mark.postgres
def test_adbc_path_honours_the_statement_timeout_and_read_only(pg_orders: str) -> None:
    """A Parquet export outliving the statement timeout fails with statement_timeout and
    a SELECT that writes (`nextval`) fails with read_only, as on the other paths."""
    with writable(pg_orders).begin() as conn:
        conn.exec_driver_sql("CREATE SEQUENCE IF NOT EXISTS order_numbers")
    settings = adbc_settings(pg_orders, statement_timeout=0.3)
    with pytest.raises(PermanentError) as caught:
        read_table(settings, SqlParams(source="shop", sql="SELECT pg_sleep(3) AS slept"))
    assert caught.value.code == "statement_timeout"
    with pytest.raises(PermanentError) as caught:
        read_table(settings, SqlParams(source="shop", sql="SELECT nextval('order_numbers') AS n"))
    assert caught.value.code == "read_only"
    assert direct(pg_orders, "SELECT is_called FROM order_numbers") == [{"is_called": False}]


class CancellingCtx(Ctx):
    """A context whose job is cancelled at its fourth checkpoint."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, fmt="parquet")
        self.checks = 0

    def checkpoint(self) -> None:
        self.checks += 1
        if self.checks >= 4:
            raise ExportCancelled("cancelled")


@pytest.mark.postgres
@pytest.mark.parametrize(
    "params",
    [
        SqlParams(source="shop", sql="SELECT g, pg_sleep(0.002) FROM generate_series(1, 100000) g"),
        SqlParams(source="shop", query="slow", params={"n": 100000}),
    ],
)
def test_cancel_during_an_adbc_read_stops_the_server_query(
    pg_orders: str, params: SqlParams
) -> None:
    """Cancelling while ADBC waits for rows (COPY or a bound cursor's FETCH) ends the
    export with ExportCancelled and the server query with it."""
    settings = adbc_settings(pg_orders)
    ctx = CancellingCtx(settings)
    with pytest.raises(ExportCancelled):
        list(sql(params, ctx))

    def nothing_running() -> bool:
        active = direct(
            pg_orders,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND state = 'active'"
            " AND (query LIKE '%pg_sleep(0.002)%' OR query LIKE 'FETCH%exportd_rows%')",
        )
        return active[0]["n"] == 0

    wait_for(nothing_running, timeout=10, what="the server-side query to stop")


def planner_estimate(url: str, statement: str) -> int:
    with writable(url).connect() as conn:
        plan = conn.execute(sa.text(f"EXPLAIN (FORMAT JSON) {statement}")).scalar_one()
    return int(plan[0]["Plan"]["Plan Rows"])


@pytest.mark.postgres
@pytest.mark.parametrize(("fmt", "encoded"), [("csv", "csv"), ("parquet", None)])
@pytest.mark.parametrize("estimate_above", [0, 10**9])
def test_auto_count_estimates_only_big_results(
    pg_orders: str, fmt: str, encoded: str | None, estimate_above: int
) -> None:
    """`count = "auto"` (the default) shows the planner's estimate, marked as such, when
    it reaches `estimate_above`, and counts exactly below it: on the COPY path and on
    the ADBC path alike."""
    with writable(pg_orders).begin() as conn:  # a real estimate, not the empty-table guess
        conn.exec_driver_sql("ANALYZE orders")
    settings = Settings(sources=sources_json(pg_orders, estimate_above=estimate_above))
    ctx = Ctx(settings, fmt=fmt, encoded=encoded)
    list(sql(SqlParams(source="shop", query="by_status", params=BY_STATUS), ctx))
    guess = planner_estimate(pg_orders, ESTIMATED_SQL)
    if estimate_above == 0:
        assert (ctx.total, ctx.estimated) == (guess, True)
        assert "counting rows" not in ctx.steps
    else:
        assert (ctx.total, ctx.estimated) == (25, False)
        assert "counting rows" in ctx.steps


BY_STATUS = {"status": "paid", "since": "2024-01-11"}
ESTIMATED_SQL = "SELECT * FROM orders WHERE status = 'paid' AND day >= '2024-01-11' ORDER BY id"


SEVENTHS = "SELECT * FROM orders WHERE id % 7 = 0 ORDER BY id"


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_estimated_total_becomes_the_rows_written(
    make_runtime: Callable[..., Runtime], pg_orders: str, fmt: str
) -> None:
    """A finished job whose total was estimated reports the rows it wrote as its total,
    and an estimate is never a reason to refuse (xlsx checks exact totals only)."""
    with writable(pg_orders).begin() as conn:
        conn.exec_driver_sql("ANALYZE orders")
    expected = len(direct(pg_orders, SEVENTHS))
    assert planner_estimate(pg_orders, SEVENTHS) != expected  # the planner guesses 0.5%
    queries = {"sevenths": {"sql": SEVENTHS}}
    sources = json.dumps({"shop": {"url": pg_orders, "queries": queries, "estimate_above": 0}})
    runtime = make_runtime(sources=sources)
    done = run_job(runtime, {"source": "shop", "query": "sevenths"}, format=fmt)
    assert done.status == Status.COMPLETED, done.error
    assert (done.progress.done, done.progress.total) == (expected, expected)
    assert done.artifacts[0].rows == expected


@pytest.mark.parametrize(
    ("exporter", "params", "code"),
    [
        ("sql", {"source": "nowhere", "query": "all"}, "unknown_source"),
        ("sql", {"source": "shop", "query": "nothing"}, "unknown_query"),
        (
            "sql",
            {"source": "shop", "query": "by_status", "params": {"since": "soon"}},
            "invalid_params",
        ),
        (
            "sql",
            {"source": "shop", "query": "by_status", "params": {"status": "x"}},
            "invalid_params",
        ),
        ("sql", {"source": "shop", "query": "two_statements"}, "not_a_single_select"),
        ("document", {"template": "nothing"}, "unknown_template"),
        ("document", {"source": "shop", "query": "nothing"}, "unknown_query"),
        ("document", {"source": "shop", "query": "two_statements"}, "not_a_single_select"),
    ],
)
def test_exports_that_would_fail_at_once_are_refused_when_created(
    live_server: Callable[..., Any],
    tmp_path: Path,
    exporter: str,
    params: dict[str, Any],
    code: str,
) -> None:
    """An unknown source, query or template, query params that do not bind, or a named
    query that is not one read statement, are a 422 with their code at
    `POST /v1/exports`, and no job is queued."""
    server = live_server(workers=False, sources=sources_json(f"sqlite:///{tmp_path / 'none.db'}"))
    client = server.client(server.token("alice"))
    answer = client.post(
        "/v1/exports", json={"exporter": exporter, "params": params, "format": "html"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code
    assert server.runtime.store.count_by_status() == {}
    fine = {
        "source": "shop",
        "query": "by_status",
        "params": {"status": "x", "since": "2024-01-02"},
    }
    accepted = client.post("/v1/exports", json={"exporter": "sql", "params": fine})
    assert accepted.status_code == 202, accepted.text
