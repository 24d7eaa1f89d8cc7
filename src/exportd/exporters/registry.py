"""Exporters: the *what* of an export. A registry maps names to exporter functions and
the pydantic model that validates their params.

There are two kinds. A *tabular* exporter is a generator of rows: it yields Arrow record
batches or lists of row dicts (or, when `ctx.accepts_encoded(fmt)` says so, `Encoded`
bytes already in the output format; or `NamedBatch`es when it writes several files,
which makes its output a zip bundle). A *document* exporter returns one `Document`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Literal, Protocol, TypeAlias

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.formats import DOCUMENT_FORMATS, TABULAR_FORMATS, Document

ENTRY_POINT_GROUP = "exportd.exporters"
Kind = Literal["tabular", "document"]


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportContext(Protocol):
    """What an exporter may ask and tell the runner while it produces rows."""

    job_id: str
    attempt: int
    claim_id: str
    """This attempt's claim: unique to it, never reused (its files are under it)."""
    owner: str
    format: str
    """The job's format (the first one, for a bundle of several)."""
    settings: Settings
    csv_formula_escape: bool
    """The job's `options.csv_formula_escape` (default true): encoded CSV must then have
    its formula cells escaped already (`formats.text.neutralise_quoted_csv`)."""

    def set_total(self, total: int | None, unit: str = "rows", *, estimated: bool = False) -> None:
        """The number of rows (or other units) expected, if known. `estimated` marks a
        guess (a planner estimate): it is shown as the total but never refused on, and
        the finished job's total is the number actually written."""

    def step(self, message: str) -> None:
        """A short description of the current step, shown with the progress."""

    def checkpoint(self) -> None:
        """Raise `ExportCancelled` if the job must stop; call it inside long steps."""

    def accepts_encoded(self, fmt: str) -> bool:
        """True when bytes already encoded as `fmt` may be yielded as `Encoded` and are
        written as they are (one unsharded file in that format). For `csv`: RFC 4180
        with a header line."""


@dataclass(frozen=True)
class Encoded:
    """Bytes already in the job's format (see `ExportContext.accepts_encoded`) and how
    many rows they complete."""

    data: bytes
    rows: int = 0


@dataclass(frozen=True)
class NamedBatch:
    """Rows for the file `name` (no extension) of a several-file export."""

    name: str
    batch: Any


Batch = Any  # a pyarrow.RecordBatch, a list of row dicts, a NamedBatch or Encoded
Item: TypeAlias = "pa.RecordBatch | NamedBatch | Encoded"
ExportFn = Callable[[Any, ExportContext], Any]
Authorize = Callable[[Any, bool], None]
"""`authorize(params, admin)` raises `PermanentError(code="forbidden")` to refuse a job
before it is queued (the API answers 403)."""


def allow_all(params: Any, admin: bool) -> None:
    return None


Check = Callable[[Any, Settings], None]
"""`check(params, settings)` raises `PermanentError` (with its own code) for params that
validate but would fail the job at once, such as an unknown named query: the API
answers 422 when the export is created instead of queuing a job that must fail."""


def no_check(params: Any, settings: Settings) -> None:
    return None


def _to_item(item: Any) -> Item | None:
    """An exporter's item as the runner takes it (None for an empty list)."""
    if isinstance(item, Encoded):
        return item
    if isinstance(item, NamedBatch):
        batch = _to_batch(item.batch)
        return None if batch is None else NamedBatch(item.name, batch)
    return _to_batch(item)


def _to_batch(rows: Any) -> pa.RecordBatch | None:
    if isinstance(rows, list):
        return pa.RecordBatch.from_pylist(rows) if rows else None
    if isinstance(rows, pa.Table):
        return rows.combine_chunks().to_batches()[0] if rows.num_rows else None
    return rows


@dataclass(frozen=True)
class ExporterSpec:
    name: str
    fn: ExportFn
    params: type[BaseModel]
    formats: tuple[str, ...]
    description: str
    authorize: Authorize = allow_all
    kind: Kind = "tabular"
    multi_file: bool = False
    """The exporter yields `NamedBatch`es: its output is always a zip bundle."""
    check: Check = no_check

    def validate(self, params: dict[str, Any]) -> BaseModel:
        return self.params.model_validate(params)

    def run(self, params: BaseModel, ctx: ExportContext) -> Iterator[Item]:
        """A tabular exporter's items, with lists of dicts converted to record batches
        and empty lists dropped."""
        for item in self.fn(params, ctx):
            converted = _to_item(item)
            # Hold no batch while the exporter makes the next one: the loop variables
            # would keep the previous one alive beside it (twice the memory).
            del item
            if converted is not None:
                yield converted
                del converted

    def render(self, params: BaseModel, ctx: ExportContext) -> Document:
        """A document exporter's document (returned, or yielded once)."""
        result = self.fn(params, ctx)
        if not isinstance(result, Document):
            found = [item for item in result if isinstance(item, Document)]
            if len(found) != 1:
                raise PermanentError(
                    f"exporter {self.name!r} must produce one document", code="invalid_output"
                )
            result = found[0]
        return result


class Registry:
    def __init__(self) -> None:
        self._specs: dict[str, ExporterSpec] = {}

    def add(self, spec: ExporterSpec) -> None:
        self._specs[spec.name] = spec

    def get(self, name: str) -> ExporterSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise PermanentError(f"no exporter named {name!r}", code="unknown_exporter") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ExporterSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))


registry = Registry()
"""The process-wide registry that `@exporter` fills."""


def exporter(
    name: str,
    *,
    params: type[BaseModel] = NoParams,
    formats: Iterable[str] | None = None,
    description: str | None = None,
    authorize: Authorize = allow_all,
    kind: Kind = "tabular",
    multi_file: bool = False,
    check: Check = no_check,
    into: Registry | None = None,
) -> Callable[[ExportFn], ExportFn]:
    """Register an exporter function. A tabular one (the default) yields Arrow record
    batches or lists of dicts and may write every tabular format; a `kind="document"` one
    returns a `Document` and may write html, markdown and pdf."""

    def decorate(fn: ExportFn) -> ExportFn:
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        default = TABULAR_FORMATS if kind == "tabular" else DOCUMENT_FORMATS
        spec = ExporterSpec(
            name,
            fn,
            params,
            tuple(formats if formats is not None else default),
            description or doc,
            authorize,
            kind,
            multi_file,
            check,
        )
        (into or registry).add(spec)
        return fn

    return decorate


BUILTINS = ("synthetic", "sql", "document")


def load_builtins() -> None:
    for name in BUILTINS:
        importlib.import_module(f"exportd.exporters.{name}")


def load_plugins() -> None:
    """Import every module registered under the `exportd.exporters` entry-point group
    (an entry point naming an object, `module:object`, is resolved too)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def load_app(target: str) -> None:
    """`module` or `module:object`: import it so its `@exporter` functions register."""
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    if attr:
        getattr(module, attr)


def load_all(apps: Iterable[str] = ()) -> Registry:
    load_builtins()
    load_plugins()
    for app in apps:
        load_app(app)
    return registry
