"""The one check every SQL text passes before exportd sends it to a source.

`read_statement(sql, dialect)` accepts exactly one *read statement* and returns it
without its trailing semicolons and comments; anything else raises
`PermanentError(code="not_a_single_select")`. A read statement is, as parsed by sqlglot
in the source's dialect (`postgres`, `sqlite`, `mysql`):

- a `SELECT` (with `WITH …` common table expressions, `UNION`/`INTERSECT`/`EXCEPT`,
  or in parentheses), a `VALUES` list, or PostgreSQL/MySQL `TABLE name`;
- with no `SELECT … INTO`, no locking clause (`FOR UPDATE`/`SHARE`, `LOCK IN SHARE
  MODE`), no data-modifying CTE (`WITH d AS (DELETE …)`) and no other statement
  anywhere in it (a command sqlglot does not know is refused, not guessed at);
- in MySQL, no executable comment (`/*! … */`, `/*M! … */`): the server runs its text.

The text is also proved *parenthesizable*: `(` + text + `)` lexes as the same tokens
inside one pair of parentheses, so a comment or a string cannot hide or add a closing
parenthesis and the wrappers exportd puts around the query (`COPY (…) TO STDOUT`,
`SELECT count(*) FROM (…)`, `EXPLAIN …`) hold it whole. Functions are not judged:
what a function may do is the source role's business (see docs/how-to/sql-sources.md,
"Sources: a read-only role"), and every export also runs in a read-only transaction.

This is the first of two locks. The second is the driver: statements are sent through
PostgreSQL's extended protocol (which refuses two statements in one string), sqlite3
refuses several statements, and pymysql connects without multi-statements."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from exportd.errors import PermanentError

if TYPE_CHECKING:
    from sqlglot import Token

CODE = "not_a_single_select"
DIALECTS = {"postgresql": "postgres", "postgres": "postgres", "sqlite": "sqlite"}
DIALECTS |= {"mysql": "mysql", "mariadb": "mysql"}


def dialect_of(url: str) -> str:
    """The sqlglot dialect of a source URL."""
    backend = make_url(url).get_backend_name()
    try:
        return DIALECTS[backend]
    except KeyError:
        message = f"unsupported SQL source {backend!r}"
        raise PermanentError(message, code="invalid_sources") from None


def refuse(reason: str) -> PermanentError:
    return PermanentError(f"the SQL must be exactly one read statement: {reason}", code=CODE)


def read_statement(sql: str, dialect: str) -> str:
    """`sql` as one checked read statement, cut after its last token; raises
    `PermanentError(code="not_a_single_select")` otherwise (see the module doc)."""
    # sqlglot is imported here: ~18 MB and 0.2 s that a worker without SQL jobs never pays.
    from sqlglot.dialects.dialect import Dialect

    engine = Dialect.get_or_raise(dialect)
    tokens = _statement_tokens(engine, sql)
    if dialect == "mysql":
        _no_executable_comments(tokens)
    text = sql[: tokens[-1].end + 1]
    _one_read_tree(engine, text)
    _parenthesizable(engine, text, tokens)
    return text


def _statement_tokens(engine: Any, sql: str) -> list[Token]:
    from sqlglot import TokenType
    from sqlglot.errors import TokenError

    try:
        tokens: list[Token] = list(engine.tokenize(sql))
    except TokenError as exc:
        raise refuse(f"it does not lex ({exc})") from exc
    while tokens and tokens[-1].token_type == TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise refuse("it is empty")
    if any(token.token_type == TokenType.SEMICOLON for token in tokens):
        raise refuse("it holds more than one statement")
    starts = {TokenType.SELECT, TokenType.WITH, TokenType.VALUES, TokenType.TABLE}
    if tokens[0].token_type not in starts | {TokenType.L_PAREN}:
        raise refuse(f"{tokens[0].text.upper()!r} does not start a query")
    return tokens


def _no_executable_comments(tokens: list[Token]) -> None:
    for token in tokens:
        for comment in token.comments:
            if comment.startswith(("!", "M!")):
                raise refuse("MySQL executes the text of /*! … */ comments")


def _one_read_tree(engine: Any, text: str) -> None:
    from sqlglot import exp
    from sqlglot.errors import ParseError

    try:
        trees = [tree for tree in engine.parse(text) if tree is not None]
    except ParseError as exc:
        first = str(exc).splitlines()[0]
        raise refuse(f"it does not parse as {engine.__class__.__name__} SQL ({first})") from exc
    if len(trees) != 1:
        raise refuse("it holds more than one statement")
    (tree,) = trees
    if not isinstance(tree, exp.Select | exp.SetOperation | exp.Values | exp.Subquery):
        raise refuse(f"it parses as {tree.key.upper()}, not as a query")
    for node in tree.walk():
        if isinstance(node, _forbidden()):
            raise refuse(f"it holds {_describe(node)}")


def _forbidden() -> tuple[type, ...]:
    from sqlglot import exp

    return (
        exp.Into,
        exp.Lock,
        exp.Insert,
        exp.Update,
        exp.Delete,
        exp.Merge,
        exp.DDL,
        exp.Drop,
        exp.Alter,
        exp.TruncateTable,
        exp.Copy,
        exp.Command,
        exp.Transaction,
        exp.Commit,
        exp.Rollback,
        exp.Set,
        exp.Pragma,
        exp.Use,
        exp.Describe,
        exp.LoadData,
        exp.Kill,
        exp.Execute,
    )


def _describe(node: Any) -> str:
    from sqlglot import exp

    if isinstance(node, exp.Into):
        return "SELECT … INTO"
    if isinstance(node, exp.Lock):
        return "a locking clause (FOR UPDATE / FOR SHARE)"
    return f"a {node.key.upper()} statement"


def _parenthesizable(engine: Any, text: str, tokens: list[Token]) -> None:
    """`(` + text + `)` lexes as exactly `(`, the text's own tokens, `)`."""
    from sqlglot.errors import TokenError

    try:
        wrapped = list(engine.tokenize(f"(\n{text}\n)"))
    except TokenError as exc:
        raise refuse("it does not stay whole inside parentheses") from exc
    inner = [(t.token_type, t.text) for t in wrapped[1:-1]]
    whole = (
        len(wrapped) == len(tokens) + 2
        and wrapped[0].text == "("
        and wrapped[-1].text == ")"
        and inner == [(t.token_type, t.text) for t in tokens]
    )
    if not whole:
        raise refuse("it does not stay whole inside parentheses")
    depth = 0
    for kind, _ in inner:
        depth += {"L_PAREN": 1, "R_PAREN": -1}.get(kind.name, 0)
        if depth < 0:
            raise refuse("it closes a parenthesis it did not open")
