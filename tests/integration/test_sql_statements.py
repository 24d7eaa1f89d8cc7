"""SQL sources stay read-only: ad-hoc and named SQL must be exactly one read statement.
The two attacks seen in the wild (a `;`-joined `COMMIT; DROP`, and breaking out of the
`COPY (…)` wrapper into `TO PROGRAM`) are refused at creation through the real HTTP API
and at run time, on every `count` setting and on the COPY (csv) and ADBC (parquet)
paths; the drivers refuse them too when the parser check is bypassed; legitimate
queries (CTEs, comments, semicolons and parentheses in strings, dollar quotes, named
params) still run on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sql_sources import Ctx, mysql_source, order_rows, pg_source, source_url, writable

from conftest import wait_for_status
from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.exporters import Encoded, sql_arrow
from exportd.exporters.sql import SqlParams, sql
from exportd.exporters.sql_copy import describe
from exportd.exporters.sql_session import snapshot
from exportd.jobs import NewJob, Status
from exportd.runtime import Runtime

__all__ = ["mysql_source", "pg_source", "source_url"]

COUNTS = ["auto", "exact", "estimate", "none"]
FORMATS = ["csv", "parquet"]
MULTI = "SELECT 1 AS x; COMMIT; DROP TABLE victim"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite; the *sources* vary."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


def victim_exists(url: str) -> bool:
    engine = writable(url)
    with engine.connect() as conn:
        found = sa.inspect(conn).has_table("victim")
    engine.dispose()
    return found


@pytest.fixture
def pg_victim(pg_source: str) -> Iterator[tuple[str, Path]]:
    """The PostgreSQL source with a `victim` table, and a file path that a COPY …
    TO PROGRAM would create. A control proves the check can fail: the server *can* run
    programs that write files on this machine, so a missing file means the attack did
    not run."""
    control = Path(f"/tmp/exportd-control-{uuid.uuid4().hex}")
    with writable(pg_source).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS victim (x int)")
        conn.exec_driver_sql(f"COPY (SELECT 1) TO PROGRAM 'cat > {control}'")
    assert control.exists(), "the PostgreSQL server cannot touch files here"
    control.unlink()
    marker = Path(f"/tmp/exportd-breakout-{uuid.uuid4().hex}")
    yield pg_source, marker
    marker.unlink(missing_ok=True)


def assert_intact(url: str, marker: Path) -> None:
    """The attacks did not run: the victim table is there and no program was started."""
    assert victim_exists(url)
    assert not marker.exists()


def breakout(marker: Path) -> str:
    return f"SELECT 1) TO PROGRAM 'touch {marker}' --"


def attack_sources(url: str, marker: Path) -> str:
    """One source per `count` setting, each with the two attacks as named queries."""
    queries = {"multi": {"sql": MULTI}, "breakout": {"sql": breakout(marker)}}
    return json.dumps(
        {f"shop_{count}": {"url": url, "count": count, "queries": queries} for count in COUNTS}
    )


def attack_params(kind: str, attack: str, count: str, marker: Path) -> dict[str, Any]:
    source = f"shop_{count}"
    if kind == "named":
        return {"source": source, "query": attack}
    return {"source": source, "sql": MULTI if attack == "multi" else breakout(marker)}


@pytest.mark.postgres
@pytest.mark.parametrize("attack", ["multi", "breakout"])
@pytest.mark.parametrize("kind", ["ad_hoc", "named"])
@pytest.mark.parametrize("count", COUNTS)
def test_attacks_are_refused_when_the_export_is_created(
    live_server: Callable[..., Any],
    pg_victim: tuple[str, Path],
    count: str,
    kind: str,
    attack: str,
) -> None:
    """`POST /v1/exports` answers 422 not_a_single_select for the attack as ad-hoc SQL
    (admin) or as a named query (owner), in csv and parquet; nothing is queued for the
    server's own workers to run, and the victim table and the database host are intact."""
    url, marker = pg_victim
    server = live_server(workers=True, sources=attack_sources(url, marker))
    token = server.admin_token if kind == "ad_hoc" else server.token("alice")
    client = server.client(token)
    for fmt in FORMATS:
        body = {"exporter": "sql", "params": attack_params(kind, attack, count, marker)}
        answer = client.post("/v1/exports", json={**body, "format": fmt})
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] == "not_a_single_select"
    assert server.runtime.store.count_by_status() == {}
    assert_intact(url, marker)


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("count", COUNTS)
def test_attacks_stored_as_jobs_fail_permanently_when_run(
    make_runtime: Callable[..., Runtime], pg_victim: tuple[str, Path], count: str, fmt: str
) -> None:
    """Jobs holding the attacks (put into the store directly, past the API's check) fail
    at their first attempt with not_a_single_select, ad-hoc and named alike."""
    url, marker = pg_victim
    runtime = make_runtime(sources=attack_sources(url, marker))
    jobs = [
        runtime.store.enqueue(
            NewJob(
                owner="alice",
                exporter="sql",
                params=attack_params(kind, attack, count, marker),
                format=fmt,
                max_attempts=3,
            )
        )
        for kind in ("ad_hoc", "named")
        for attack in ("multi", "breakout")
    ]
    runtime.start_worker(concurrency=1)
    for job in jobs:
        done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
        assert done.error is not None
        assert (done.status, done.attempt, done.error.code) == (
            Status.FAILED,
            1,
            "not_a_single_select",
        )
    assert_intact(url, marker)


@pytest.mark.postgres
def test_the_postgres_session_refuses_several_statements(pg_victim: tuple[str, Path]) -> None:
    """Past the parser check, the session itself sends statements through the extended
    protocol: `;`-joined SQL (plain, or after EXPLAIN) is refused by the server."""
    url, _ = pg_victim
    for statement in (MULTI, f"EXPLAIN (FORMAT JSON) {MULTI}"):
        with pytest.raises(PermanentError) as caught, snapshot(url, 10.0) as (conn, _):
            conn.execute(sa.text(statement)).all()
        assert caught.value.code == "not_a_single_select"
    assert victim_exists(url)


@pytest.mark.postgres
def test_the_server_parses_the_copy_text_alone_first(pg_victim: tuple[str, Path]) -> None:
    """The text meant for `COPY (…)` is parsed alone by PostgreSQL before any COPY: the
    breakout is a syntax error and `;`-joined SQL is not_a_single_select."""
    url, marker = pg_victim
    with pytest.raises(PermanentError) as caught, snapshot(url, 10.0) as (conn, _):
        describe(conn, breakout(marker))
    assert caught.value.code == "query_failed"
    with pytest.raises(PermanentError) as caught, snapshot(url, 10.0) as (conn, _):
        describe(conn, MULTI)
    assert caught.value.code == "not_a_single_select"
    assert_intact(url, marker)


@pytest.mark.postgres
def test_the_adbc_driver_refuses_both_attacks(pg_victim: tuple[str, Path]) -> None:
    """Past the parser check, ADBC's estimate refuses `;`-joined SQL and its COPY read
    refuses the breakout: the driver prepares every statement."""
    url, marker = pg_victim
    with pytest.raises(PermanentError) as caught, sql_arrow.session(url, 10.0) as conn:
        sql_arrow.estimate_rows(conn, MULTI, None)
    assert caught.value.code == "not_a_single_select"
    ctx = Ctx(Settings(), fmt="parquet")
    with pytest.raises(PermanentError), sql_arrow.session(url, 10.0) as conn:
        list(sql_arrow.copy_batches(conn, breakout(marker), ctx))
    assert_intact(url, marker)


def test_sqlite_runs_one_statement_per_call(tmp_path: Path) -> None:
    """Past the parser check, sqlite3 refuses a `;`-joined string: the table survives."""
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with writable(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE victim (x int)")
    with pytest.raises(PermanentError) as caught, snapshot(url, 10.0) as (conn, _):
        conn.execute(sa.text(MULTI)).all()
    assert caught.value.code == "not_a_single_select"
    assert victim_exists(url)


@pytest.mark.mysql
def test_mysql_connects_without_multi_statements(mysql_source: str) -> None:
    """Even a URL asking for `client_flag=MULTI_STATEMENTS` gets a connection that
    refuses `SELECT 1; SELECT 2`."""
    url = f"{mysql_source}?client_flag={1 << 16}"
    with pytest.raises(PermanentError) as caught, snapshot(url, 10.0) as (conn, _):
        conn.exec_driver_sql("SELECT 1; SELECT 2").all()
    assert caught.value.code == "query_failed"


PAID = "status = 'paid'"
LEGIT = {
    "cte": f"WITH paid AS (SELECT id, ';)' AS s FROM orders WHERE {PAID}) "
    "SELECT id, s FROM paid ORDER BY id",
    "comments": f"-- why: ) ;\nSELECT id, /* ) ; */ ';)' AS s FROM orders WHERE {PAID}"
    " -- ) trailing\nORDER BY id",
    "semicolon": f"SELECT id, ';)' AS s FROM orders WHERE {PAID} ORDER BY id;  ",
}
DOLLARS = f"SELECT id, $$;)$$ AS s, $q$ ) ; $q$ AS t FROM orders WHERE {PAID} ORDER BY id"
NAMED = {
    "sql": "SELECT id, ';)' AS s FROM orders WHERE status = :status ORDER BY id -- )",
    "params": {"status": "str"},
}
PAID_IDS = sorted(row["id"] for row in order_rows() if row["status"] == "paid")


def exported(settings: Settings, params: SqlParams, fmt: str) -> list[dict[str, Any]]:
    """The rows the exporter produces, from COPY's CSV or from record batches."""
    ctx = Ctx(settings, fmt=fmt, encoded="csv" if fmt == "csv" else None)
    items = list(sql(params, ctx))
    if items and isinstance(items[0], Encoded):
        text = b"".join(item.data for item in items).decode()
        return list(csv.DictReader(io.StringIO(text, newline="")))
    return pa.Table.from_batches(items).to_pylist()  # type: ignore[arg-type]


def legit_settings(url: str) -> Settings:
    sources = {"shop": {"url": url, "queries": {"named": NAMED}}}
    return Settings(sources=json.dumps(sources))


def paid_ids(rows: list[dict[str, Any]]) -> list[int]:
    return [int(row["id"]) for row in rows]


@pytest.mark.parametrize("name", sorted(LEGIT))
def test_legitimate_queries_still_run(source_url: str, name: str) -> None:
    """CTEs, comments holding `)` and `;`, a trailing semicolon and string literals
    holding `;)` export exactly the paid orders, on every source (through COPY and ADBC
    on PostgreSQL)."""
    settings = legit_settings(source_url)
    fmts = ["csv", "parquet"] if source_url.startswith("postgresql") else ["ndjson"]
    for fmt in fmts:
        rows = exported(settings, SqlParams(source="shop", sql=LEGIT[name]), fmt)
        assert paid_ids(rows) == PAID_IDS
        assert {row["s"] for row in rows} == {";)"}


def test_named_params_still_bind(source_url: str) -> None:
    """A named query with a `:status` param and a trailing comment holding `)` binds and
    exports the paid orders (COPY and ADBC on PostgreSQL)."""
    settings = legit_settings(source_url)
    fmts = ["csv", "parquet"] if source_url.startswith("postgresql") else ["ndjson"]
    params = SqlParams(source="shop", query="named", params={"status": "paid"})
    for fmt in fmts:
        assert paid_ids(exported(settings, params, fmt)) == PAID_IDS


@pytest.mark.postgres
@pytest.mark.parametrize("fmt", FORMATS)
def test_dollar_quoted_strings_still_run_on_postgres(pg_source: str, fmt: str) -> None:
    """PostgreSQL dollar-quoted strings holding `;` and `)` are one string each."""
    rows = exported(legit_settings(pg_source), SqlParams(source="shop", sql=DOLLARS), fmt)
    assert paid_ids(rows) == PAID_IDS
    assert {(row["s"], row["t"]) for row in rows} == {(";)", " ) ; ")}


@pytest.mark.postgres
def test_postgres_sessions_lex_strings_as_the_check_does(pg_source: str) -> None:
    """A source whose sessions start with `standard_conforming_strings = off` still
    reads with it on (a backslash does not escape a quote), through SQLAlchemy and ADBC:
    the server lexes strings the way the statement check did."""
    url = f"{pg_source}?options=-cstandard_conforming_strings%3Doff"
    with writable(url).connect() as conn:
        assert conn.exec_driver_sql("SHOW standard_conforming_strings").scalar() == "off"
    with snapshot(url, 10.0) as (conn, _):
        assert conn.exec_driver_sql("SHOW standard_conforming_strings").scalar() == "on"
    with sql_arrow.session(url, 10.0) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT current_setting('standard_conforming_strings') AS s")
        assert cursor.fetchone() == ("on",)


@pytest.mark.mysql
def test_mysql_sessions_lex_strings_as_the_check_does(mysql_source: str) -> None:
    """A MySQL/MariaDB session started with `NO_BACKSLASH_ESCAPES` loses it in the
    export's session (backslashes escape, as the statement check assumes), keeping the
    rest of its sql_mode."""
    mode = "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"
    url = f"{mysql_source}?init_command=SET+SESSION+sql_mode%3D%27{mode}%27"
    with writable(url).connect() as conn:
        started = set(conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar().split(","))
    assert started == set(mode.split(","))
    with snapshot(url, 10.0) as (conn, _):
        assert conn.exec_driver_sql("SELECT @@SESSION.sql_mode").scalar() == "ANSI_QUOTES"
