"""SQL sources: named databases and their named, parameterised queries.

Configured in `exportd.toml` (the file `EXPORTD_SOURCES_FILE` names, else `./exportd.toml`
when it exists) and/or in `EXPORTD_SOURCES` (JSON of the same shape; a source defined in
both is taken from the environment)::

    [sources.shop]
    url = "postgresql://reader@db/shop"      # postgresql, sqlite, mysql/mariadb (pymysql)
    statement_timeout = 60                   # seconds; default EXPORTD_SQL_STATEMENT_TIMEOUT
    count = "auto"                           # auto (default) | exact | estimate | none
    estimate_above = 1000000                 # auto: estimate from this many rows up

    [sources.shop.queries.orders_since]
    sql = "SELECT * FROM orders WHERE created_at >= :since AND status = :status"
    description = "Orders since a day, by status"
    params = { since = "date", status = { type = "str", default = "paid" } }

Query parameters are bound (`:name`), never interpolated, and typed: str, int, float,
decimal, bool, date, datetime. A query's SQL must be exactly one read statement
(`sql_statement.read_statement`): an export of one that is not is refused when it is
created (422 `not_a_single_select`), and `exportd serve`/`exportd worker` warn about it
when they start (`warn_about_sources`), as they do about a PostgreSQL source that
connects as a superuser or cannot be reached. Give sources a read-only role: see
docs/how-to/sql-sources.md.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from exportd.config import Settings
from exportd.errors import ConfigurationError, JobFailure, PermanentError

if TYPE_CHECKING:
    from exportd.exporters.registry import ExportContext

log = logging.getLogger(__name__)

ParamType = Literal["str", "int", "float", "decimal", "bool", "date", "datetime"]
PYTHON_TYPES: dict[str, type] = {
    "str": str,
    "int": int,
    "float": float,
    "decimal": decimal.Decimal,
    "bool": bool,
    "date": dt.date,
    "datetime": dt.datetime,
}
NO_DEFAULT = object()


class QueryParam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ParamType = "str"
    default: Any = None
    required: bool = True


class NamedQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str
    description: str = ""
    params: dict[str, ParamType | QueryParam] = Field(default_factory=dict)

    def bind(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check and convert the caller's values; raises `invalid_params`."""
        fields: dict[str, Any] = {}
        for name, spec in self.params.items():
            param = spec if isinstance(spec, QueryParam) else QueryParam(type=spec)
            required = param.required and param.default is None
            fields[name] = (PYTHON_TYPES[param.type], ... if required else param.default)
        model = create_model(
            "QueryParams", __config__=ConfigDict(extra="forbid", strict=False), **fields
        )
        try:
            return dict(model.model_validate(values).model_dump())
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise PermanentError(
                f"invalid query params: {problems}", code="invalid_params"
            ) from exc


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    statement_timeout: float | None = Field(default=None, gt=0)
    count: Literal["auto", "exact", "estimate", "none"] = "auto"
    estimate_above: int = Field(default=1_000_000, ge=0)
    """With `count = "auto"`, a query PostgreSQL's planner expects to return at least this
    many rows shows the estimate as its total instead of paying for an exact count."""
    queries: dict[str, NamedQuery] = Field(default_factory=dict)

    def report_total(
        self, ctx: ExportContext, estimate: Callable[[], int] | None, exact: Callable[[], int]
    ) -> None:
        """Give `ctx` the total this source's `count` setting asks for. `estimate` is the
        planner's guess (None where the database has no planner estimate), `exact` a
        `count(*)` in the export's snapshot: a second scan of the data."""
        if self.count == "none":
            return
        if self.count in ("auto", "estimate") and estimate is not None:
            guess = estimate()
            if self.count == "estimate" or guess >= self.estimate_above:
                ctx.set_total(guess, estimated=True)
                return
        ctx.step("counting rows")
        ctx.set_total(exact())

    def query(self, name: str) -> NamedQuery:
        try:
            return self.queries[name]
        except KeyError:
            raise PermanentError(f"no query named {name!r}", code="unknown_query") from None


def sources_path(settings: Settings) -> Path | None:
    if settings.sources_file is not None:
        if not settings.sources_file.is_file():
            raise ConfigurationError(f"sources file {settings.sources_file} does not exist")
        return settings.sources_file
    default = Path("exportd.toml")
    return default if default.is_file() else None


def load_sources(settings: Settings) -> dict[str, Source]:
    """Every configured source by name (file first, then `EXPORTD_SOURCES`)."""
    raw: dict[str, Any] = {}
    path = sources_path(settings)
    try:
        if path is not None:
            raw.update(tomllib.loads(path.read_text()).get("sources", {}))
        if settings.sources:
            raw.update(json.loads(settings.sources))
        return {name: Source.model_validate(value) for name, value in raw.items()}
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PermanentError(
            f"invalid SQL sources configuration: {exc}", code="invalid_sources"
        ) from exc


def get_source(settings: Settings, name: str) -> Source:
    sources = load_sources(settings)
    try:
        return sources[name]
    except KeyError:
        raise PermanentError(f"no SQL source named {name!r}", code="unknown_source") from None


def check_sources_at_start(settings: Settings) -> threading.Thread:
    """`warn_about_sources` in a daemon thread, so that an unreachable source does not
    delay the start of `exportd serve` or `exportd worker`."""
    thread = threading.Thread(
        target=warn_about_sources, args=(settings,), name="exportd-source-check", daemon=True
    )
    thread.start()
    return thread


def warn_about_sources(settings: Settings) -> None:
    """Log a WARNING, once at start, for every configured source with a named query that
    is not one read statement, every PostgreSQL source whose role is a superuser, and
    every one that cannot be reached (its exports will retry). Never raises."""
    try:
        sources = load_sources(settings)
    except (PermanentError, ConfigurationError) as exc:
        log.warning("%s", exc)
        return
    for name, source in sources.items():
        _warn_about_queries(name, source)
        _warn_about_role(name, source)


def _warn_about_queries(name: str, source: Source) -> None:
    from exportd.exporters.sql_statement import dialect_of, read_statement

    for query_name, query in source.queries.items():
        try:
            read_statement(query.sql, dialect_of(source.url))
        except PermanentError as exc:
            log.warning("SQL source %r, query %r is refused: %s", name, query_name, exc)


def _warn_about_role(name: str, source: Source) -> None:
    from exportd.exporters.sql_session import superuser_role
    from exportd.exporters.sql_statement import dialect_of

    try:
        if dialect_of(source.url) != "postgres":
            return
        role = superuser_role(source.url)
    except JobFailure as exc:
        log.warning("SQL source %r cannot be reached at start: %s", name, exc)
        return
    if role is not None:
        log.warning(
            "SQL source %r connects to PostgreSQL as %r, a superuser: its exports could "
            "read server files and run programs on the database host. Give it a "
            "read-only role (docs/how-to/sql-sources.md, 'Sources: a read-only role').",
            name,
            role,
        )
