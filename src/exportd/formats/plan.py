"""Output planning: which files an export writes, decided from the job before any row.

- one format, no limits → one file, `export-<job id>.<ext><compression>` (or the job's
  `filename`);
- `options.max_rows_per_file` / `options.max_bytes_per_file` → numbered parts
  (`part-00000.csv.gz`, …), each its own artifact, plus a `manifest.json` artifact;
  more than `max_parts` parts fail the job with `too_many_parts`;
- `options.formats: [...]` (or an exporter that writes several files) → one `zip`
  bundle artifact holding every file and a `manifest.json`; the members are not
  separate artifacts. Inside a bundle, members carry the job's compression and are
  stored; with compression `none` the zip deflates them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from exportd.errors import PermanentError
from exportd.formats.base import FormatSpec
from exportd.formats.sink import COMPRESSIONS, check_compression
from exportd.formats.text import VERBATIM
from exportd.formats.writers import format_spec

MIN_PART_BYTES = 1024


def json_number(value: Any) -> Any:
    """Numbers as JSON numbers: pydantic would otherwise take `true` as 1 or `"5"` as 5."""
    if isinstance(value, bool | str):
        kind = "boolean" if isinstance(value, bool) else "string"
        raise PydanticCustomError(
            "number_type", "Input should be a number, not a {kind}", {"kind": kind}
        )
    return value


class WriterOptions(BaseModel):
    """The keys of a job's `options`."""

    model_config = ConfigDict(extra="forbid")

    formats: Annotated[list[str], Field(min_length=1, max_length=16)] | None = None
    max_rows_per_file: Annotated[int, Field(ge=1)] | None = None
    max_bytes_per_file: Annotated[int, Field(ge=MIN_PART_BYTES)] | None = None
    csv_formula_escape: bool = Field(
        default=True,
        strict=True,
        description="CSV/TSV: prefix with `'` the string cells and header names that a "
        "spreadsheet would run as a formula (first character = + - @ tab or carriage "
        "return); numbers are never changed. false writes every value verbatim.",
    )

    _numbers = field_validator("max_rows_per_file", "max_bytes_per_file", mode="before")(
        json_number
    )


def parse_options(options: dict[str, Any]) -> WriterOptions:
    try:
        return WriterOptions.model_validate(options)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors())
        raise PermanentError(f"invalid options: {fields}", code="invalid_options") from exc


@dataclass(frozen=True)
class OutputPlan:
    job_id: str
    formats: tuple[FormatSpec, ...]
    compression: str
    stem: str
    filename: str | None = None
    max_rows_per_file: int | None = None
    max_bytes_per_file: int | None = None
    max_parts: int = 1000
    bundle: bool = False
    document: bool = False
    csv_formula_escape: bool = True
    """CSV/TSV formula cells get a leading `'` (the formats' writers are chosen to match;
    an exporter writing encoded CSV reads it from `ExportContext.csv_formula_escape`)."""

    @property
    def sharded(self) -> bool:
        return self.max_rows_per_file is not None or self.max_bytes_per_file is not None

    def file_name(self, fmt: FormatSpec, member: str | None, part: int | None) -> str:
        """The name of one file; parts are numbered from 0."""
        suffix = fmt.extension + ("" if fmt.container else COMPRESSIONS[self.compression])
        if part is not None:
            lead = f"{member}." if member else ""
            return f"{lead}part-{part:05d}.{suffix}"
        if not self.bundle and self.filename:
            return self.filename
        return f"{member or self.stem}.{suffix}"

    @property
    def bundle_name(self) -> str:
        if self.filename and self.filename.endswith(".zip"):
            return self.filename
        return f"{self.stem}.zip"

    def check_total(self, rows: int | None) -> None:
        """Refuse early when a known row count already needs too many parts, or more
        rows in one file than its format holds."""
        if rows is None:
            return
        per_file = min(rows, self.max_rows_per_file or rows)
        for fmt in self.formats:
            if fmt.row_limit is not None and per_file > fmt.row_limit:
                raise PermanentError(
                    f"one {fmt.name} file holds at most {fmt.row_limit:,} rows; set "
                    f"options.max_rows_per_file to at most {fmt.row_limit} to split the export",
                    code="too_many_rows",
                )
        if self.max_rows_per_file is None:
            return
        parts = max(1, math.ceil(rows / self.max_rows_per_file)) * len(self.formats)
        if parts > self.max_parts:
            raise too_many_parts(self.max_parts)


def too_many_parts(limit: int) -> PermanentError:
    return PermanentError(
        f"the export would need more than {limit} files; raise max_rows_per_file or "
        "max_bytes_per_file",
        code="too_many_parts",
    )


def plan_output(
    *,
    job_id: str,
    format: str,
    compression: str,
    options: dict[str, Any],
    filename: str | None,
    allowed: Sequence[str],
    document: bool = False,
    multi_file: bool = False,
    max_parts: int = 1000,
) -> OutputPlan:
    """Check a job's format, compression and options against what its exporter can
    write, and decide its files. Raises `PermanentError` (invalid_format,
    invalid_compression, invalid_options)."""
    opts = parse_options(options)
    check_compression(compression)
    names = opts.formats or [format]
    specs = tuple(
        _with_escaping(format_spec(name), opts.csv_formula_escape) for name in dict.fromkeys(names)
    )
    for spec in specs:
        if spec.name not in allowed:
            raise PermanentError(
                f"this exporter cannot write {spec.name!r} (use {', '.join(allowed)})",
                code="invalid_format",
            )
    sharded = opts.max_rows_per_file is not None or opts.max_bytes_per_file is not None
    if document and (sharded or len(specs) > 1):
        raise PermanentError(
            "a document is one file: formats, max_rows_per_file and max_bytes_per_file "
            "do not apply",
            code="invalid_options",
        )
    return OutputPlan(
        job_id=job_id,
        formats=specs,
        compression=compression,
        stem=f"export-{job_id}",
        filename=filename,
        max_rows_per_file=opts.max_rows_per_file,
        max_bytes_per_file=opts.max_bytes_per_file,
        max_parts=max_parts,
        bundle=opts.formats is not None or multi_file,
        document=document,
        csv_formula_escape=opts.csv_formula_escape,
    )


def _with_escaping(spec: FormatSpec, escape: bool) -> FormatSpec:
    """The format with the writer that leaves formula cells as they are, when asked."""
    if escape or spec.writer not in VERBATIM:
        return spec
    return dataclasses.replace(spec, writer=VERBATIM[spec.writer])
