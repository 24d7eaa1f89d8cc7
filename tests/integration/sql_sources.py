"""Source databases for the SQL and document exporter tests: the same `orders` table in a
SQLite file (WAL) and in a PostgreSQL database of its own, and an `ExportContext` for
calling exporters directly."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from conftest import temporary_mysql_database, temporary_pg_database
from exportd.config import Settings

BIG = 2**53 + 7
NOTES = ['a "quote"', "comma, here", "new\nline", "<script>alert(1)</script>", "ünï 注文", None]
CREATE = """CREATE TABLE orders (
    id BIGINT PRIMARY KEY, amount NUMERIC(20, 2), day DATE, at TIMESTAMP WITH TIME ZONE,
    paid BOOLEAN, status TEXT, note TEXT)"""
CREATE_MYSQL = """CREATE TABLE orders (
    id BIGINT PRIMARY KEY, amount NUMERIC(20, 2), day DATE, at DATETIME(6),
    paid BOOLEAN, status VARCHAR(20), note TEXT) CHARACTER SET utf8mb4"""


def order_rows(count: int = 60) -> list[dict[str, Any]]:
    return [
        {
            "id": BIG + i if i % 3 == 0 else i,
            "amount": Decimal(f"{i * 1234567}.{i % 100:02d}"),
            "day": dt.date(2024, 1, 1) + dt.timedelta(days=i),
            "at": dt.datetime(2024, 5, 1, 12, 0, i % 60, 250000, tzinfo=dt.UTC),
            "paid": i % 2 == 0,
            "status": "paid" if i % 2 == 0 else "open",
            "note": NOTES[i % len(NOTES)],
        }
        for i in range(count)
    ]


def fill(url: str, rows: list[dict[str, Any]]) -> None:
    engine = writable(url)
    dialect = engine.dialect.name
    if dialect == "sqlite":  # SQLite has no decimal or date types: text
        rows = [{k: _sqlite_value(v) for k, v in row.items()} for row in rows]
    if dialect == "mysql":  # DATETIME holds no zone: UTC
        rows = [{**row, "at": row["at"].replace(tzinfo=None)} for row in rows]
    with engine.begin() as conn:
        if dialect == "sqlite":
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        conn.exec_driver_sql("DROP TABLE IF EXISTS orders")
        conn.exec_driver_sql(CREATE_MYSQL if dialect == "mysql" else CREATE)
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :amount, :day, :at, :paid, :status, :note)"),
            rows,
        )
    engine.dispose()


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def pg_source() -> Iterator[str]:
    """A PostgreSQL database of its own holding `orders`."""
    with temporary_pg_database("exportd_src") as url:
        fill(url, order_rows())
        yield url


@pytest.fixture(scope="module")
def mysql_source() -> Iterator[str]:
    """A MySQL/MariaDB database of its own holding `orders`."""
    with temporary_mysql_database("exportd_src") as url:
        fill(url, order_rows())
        yield url


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh `orders` source: a SQLite file, or the PostgreSQL or MariaDB
    database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'source.db'}"
        fill(url, order_rows())
        return url
    url = request.getfixturevalue(f"{'pg' if request.param == 'postgres' else 'mysql'}_source")
    fill(url, order_rows())
    return url


def writable(url: str) -> sa.Engine:
    """A read-write engine on a source, for the test's own reads and writes."""
    for plain, driver in (
        ("postgresql://", "postgresql+psycopg://"),
        ("mysql://", "mysql+pymysql://"),
    ):
        url = url.replace(plain, driver, 1)
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


QUERIES = {
    "by_status": {
        "sql": "SELECT * FROM orders WHERE status = :status AND day >= :since ORDER BY id",
        "params": {"status": "str", "since": "date"},
    },
    "all": {"sql": "SELECT * FROM orders ORDER BY id"},
    "two_statements": {"sql": "SELECT * FROM orders; DELETE FROM orders"},
}


def sources_json(url: str, **extra: Any) -> str:
    return json.dumps(
        {
            "shop": {"url": url, "queries": QUERIES, **extra},
            "shop_nocount": {"url": url, "queries": QUERIES, "count": "none"},
        }
    )


class Ctx:
    """An `ExportContext` for calling an exporter directly."""

    def __init__(
        self,
        settings: Settings,
        *,
        fmt: str = "csv",
        encoded: str | None = None,
        csv_formula_escape: bool = True,
    ):
        self.job_id, self.attempt, self.owner = "job", 1, "alice"
        self.format = fmt
        self.settings = settings
        self.encoded = encoded
        self.csv_formula_escape = csv_formula_escape
        self.total: int | None = None
        self.estimated = False
        self.steps: list[str] = []

    def set_total(self, total: int | None, unit: str = "rows", *, estimated: bool = False) -> None:
        self.total = total
        self.estimated = estimated

    def step(self, message: str) -> None:
        self.steps.append(message)

    def checkpoint(self) -> None:
        pass

    def accepts_encoded(self, fmt: str) -> bool:
        return fmt == self.encoded
