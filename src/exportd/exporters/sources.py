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
decimal, bool, date, datetime.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from exportd.config import Settings
from exportd.errors import ConfigurationError, PermanentError

if TYPE_CHECKING:
    from exportd.exporters.registry import ExportContext

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
