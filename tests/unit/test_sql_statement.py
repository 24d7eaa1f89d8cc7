"""`read_statement` accepts exactly one read statement per dialect and returns it cut
after its last token; everything else is `not_a_single_select`, with a reason."""

from __future__ import annotations

import pytest

from exportd.errors import PermanentError
from exportd.exporters.sql_statement import dialect_of, read_statement

DIALECTS = ["postgres", "sqlite", "mysql"]

ACCEPTED = {
    "SELECT 1": "SELECT 1",
    "  SELECT 1 ;  ; ": "  SELECT 1",
    "SELECT 1; -- done )": "SELECT 1",
    "SELECT 1 -- )": "SELECT 1",
    "-- why )\nSELECT /* ; ) */ 1 AS x": "-- why )\nSELECT /* ; ) */ 1 AS x",
    "WITH a AS (SELECT 1 AS x) SELECT x FROM a": "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
    "SELECT 1 UNION ALL SELECT 2": "SELECT 1 UNION ALL SELECT 2",
    "(SELECT 1) UNION (SELECT 2)": "(SELECT 1) UNION (SELECT 2)",
    "SELECT ';)' AS s WHERE 1 = :n": "SELECT ';)' AS s WHERE 1 = :n",
    "SELECT 'it''s ) ;' AS s": "SELECT 'it''s ) ;' AS s",
}


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("sql", "expected"), sorted(ACCEPTED.items()))
def test_read_statements_are_accepted_and_cut_after_their_last_token(
    dialect: str, sql: str, expected: str
) -> None:
    """Queries with CTEs, set operations, comments, strings holding `;` or `)`, named
    params and trailing semicolons pass, without what follows their last token."""
    assert read_statement(sql, dialect) == expected


@pytest.mark.parametrize(
    ("sql", "dialect"),
    [
        ("SELECT $$ ; ) $$ AS s, $q$ $$ ) $q$ AS t", "postgres"),
        ("SELECT E'\\') ;' AS s", "postgres"),
        ("SELECT 1 /* outer /* inner */ ) ; */ AS x", "postgres"),
        ("VALUES (1, 2), (3, 4)", "postgres"),
        ("TABLE orders", "postgres"),
        ("SELECT x::int, y ->> 'k' FROM t WHERE z = ANY(:ids)", "postgres"),
        ("SELECT `a` # comment )\nFROM t", "mysql"),
        ("TABLE orders", "mysql"),
        ("SELECT 'a\\' ) ;' AS s", "mysql"),
        ("VALUES (1, 2)", "sqlite"),
    ],
)
def test_dialect_specific_read_statements_are_accepted(sql: str, dialect: str) -> None:
    """Dollar quotes, E-strings and nested comments (PostgreSQL), backtick identifiers,
    `#` comments and backslash escapes (MySQL), VALUES and TABLE where the dialect has
    them: one statement each."""
    assert read_statement(sql, dialect) == sql


REFUSED = [
    ("SELECT 1 AS x; COMMIT; DROP TABLE victim", "more than one statement"),
    ("SELECT 1) TO PROGRAM 'touch /tmp/x' --", "does not parse"),
    ("SELECT 1 )", "does not parse"),
    ("", "empty"),
    (" ;; ", "empty"),
    ("-- only a comment", "empty"),
    ("DELETE FROM t", "'DELETE' does not start a query"),
    ("DROP TABLE victim", "'DROP' does not start a query"),
    ("EXPLAIN SELECT 1", "'EXPLAIN' does not start a query"),
    ("COPY t TO STDOUT", "'COPY' does not start a query"),
    ("SET search_path = evil", "'SET' does not start a query"),
    ("SELECT * INTO copy FROM t", "SELECT … INTO"),
    ("SELECT * FROM t FOR UPDATE", "locking clause"),
    ("SELECT * FROM t FOR SHARE", "locking clause"),
    ("SELECT 1 WHERE EXISTS (SELECT 1 FROM t FOR UPDATE)", "locking clause"),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "DELETE"),
    ("WITH u AS (UPDATE t SET x = 1 RETURNING *) SELECT * FROM u", "UPDATE"),
    ("WITH i AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM i", "INSERT"),
    ("SELECT 'unterminated", "does not lex"),
    ("SELECT 1 /* unterminated", "does not lex"),
]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("sql", "reason"), REFUSED)
def test_everything_else_is_refused_with_its_reason(dialect: str, sql: str, reason: str) -> None:
    """Several statements, a breakout of the wrapper, non-queries, SELECT INTO, locking
    clauses and data-modifying CTEs are `not_a_single_select`, saying why."""
    with pytest.raises(PermanentError) as caught:
        read_statement(sql, dialect)
    assert caught.value.code == "not_a_single_select"
    assert reason in caught.value.message


@pytest.mark.parametrize(
    ("sql", "dialect", "reason"),
    [
        ("SELECT 1 /*! ; DROP TABLE victim */", "mysql", "/*! … */"),
        ("SELECT 1 /*M!100000 ) */", "mysql", "/*! … */"),
        ("SELECT '\\' ) TO PROGRAM 'x' --'", "postgres", "does not parse"),
        ("SELECT 1 /* a /* b */ ) */", "sqlite", "does not parse"),
        ("TABLE orders", "sqlite", "not as a query"),
    ],
)
def test_dialect_specific_tricks_are_refused(sql: str, dialect: str, reason: str) -> None:
    """MySQL executable comments; a backslash that does not escape a PostgreSQL string
    (standard conforming strings); SQLite comments, which do not nest; TABLE where the
    dialect has no such statement."""
    with pytest.raises(PermanentError) as caught:
        read_statement(sql, dialect)
    assert (caught.value.code, reason in caught.value.message) == ("not_a_single_select", True)


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("postgresql://u@h/db", "postgres"),
        ("postgresql+psycopg://u@h/db", "postgres"),
        ("sqlite:///x.db", "sqlite"),
        ("mysql://u@h/db", "mysql"),
        ("mariadb+pymysql://u@h/db", "mysql"),
    ],
)
def test_the_dialect_follows_the_source_url(url: str, dialect: str) -> None:
    """Each source URL is checked in its database's dialect."""
    assert dialect_of(url) == dialect


def test_an_unknown_database_is_an_invalid_source() -> None:
    """A source URL of another database is refused as an invalid source."""
    with pytest.raises(PermanentError) as caught:
        dialect_of("oracle://u@h/db")
    assert caught.value.code == "invalid_sources"
