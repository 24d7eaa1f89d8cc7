"""The docs' examples work as written: the SQL how-to's configuration and command, and
the data each shipped document template takes (docs/reference/templates.md), run with
the real `exportd` command in-process on a SQLite source."""

from __future__ import annotations

import json
import re
import shlex
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support.cli import exportd, local_env

pytestmark = pytest.mark.slow

DOCS = Path(__file__).resolve().parents[2] / "docs"
SQL_HOW_TO = DOCS / "how-to" / "sql-sources.md"
TEMPLATES = DOCS / "reference" / "templates.md"
ORDERS = [
    (1, "paid", 10.5, "2023-12-31"),
    (2, "paid", 20.0, "2024-01-01"),
    (3, "shipped", 7.25, "2024-02-10"),
    (4, "paid", 3.0, "2024-03-05"),
]


def block(doc: Path, label: str) -> str:
    """The text of the doc's fenced block whose info string ends with `label`."""
    found = re.search(rf"```\w+ {label}\n(.*?)```", doc.read_text(), re.DOTALL)
    assert found is not None, f"no block labelled {label} in {doc}"
    return found.group(1)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A directory with the how-to's `exportd.toml`, its source a SQLite file of orders."""
    database = tmp_path / "shop.db"
    with sqlite3.connect(database) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER, status TEXT, total REAL, created_at TEXT)")
        conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", ORDERS)
    config = block(SQL_HOW_TO, "sources-config")
    url = re.search(r'^url = "([^"]+)"', config, re.MULTILINE)
    assert url is not None
    (tmp_path / "exportd.toml").write_text(config.replace(url.group(1), f"sqlite:///{database}"))
    return tmp_path


def test_the_sql_how_to_command_exports_the_named_query(shop: Path) -> None:
    """The how-to's command, in the configured directory, exports the paid orders since
    the given day (the `status` param's default) to Parquet."""
    line = next(x for x in block(SQL_HOW_TO, "cli-run").splitlines() if x.startswith("$ "))
    command = shlex.split(line[2:])
    assert command[:2] == ["exportd", "export"]
    result = exportd(*command[1:], env=local_env(shop), cwd=shop)
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(shop / "orders.parquet").to_pylist()
    assert rows == [
        {"id": 2, "status": "paid", "total": 20.0},
        {"id": 4, "status": "paid", "total": 3.0},
    ]


def test_the_report_example_renders_the_query_as_a_table(shop: Path) -> None:
    """The `report` example: title, subtitle, intro and the query's rows in a table."""
    params = block(TEMPLATES, "report")
    result = exportd(
        "export",
        "document",
        "--params-json",
        params,
        "-f",
        "markdown",
        "-o",
        "-",
        env=local_env(shop),
        cwd=shop,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    data = json.loads(params)["data"]
    assert text.startswith("# Paid orders")
    assert data["subtitle"] in text and data["intro"] in text
    cells = re.sub(r" *\| *", "|", text)
    assert "|id|status|total|" in cells
    assert "|4|paid|3.0|" in cells
    assert "2 rows." in text


def test_the_resume_example_renders_every_section(tmp_path: Path) -> None:
    """The `resume` example: name, headline, contact line, profile, experience with its
    points, education and skills."""
    params = block(TEMPLATES, "resume")
    result = exportd(
        "export",
        "document",
        "--params-json",
        params,
        "-f",
        "markdown",
        "-o",
        "-",
        env=local_env(tmp_path),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("# Ada Lovelace")
    for expected in (
        "**Analyst of engines**",
        "ada@example.org · London",
        "## Profile",
        "### Translator and annotator — Analytical Engine (1842-1843)",
        "- The Bernoulli numbers program",
        "- Private tutoring — Augustus De Morgan (1840)",
        "mathematics, poetical science",
    ):
        assert expected in text
