"""The formats exportd writes, by name. Tabular writers stream Arrow record batches one
at a time, so memory does not grow with the number of rows; see `base.TabularWriter`."""

from __future__ import annotations

from exportd.errors import PermanentError
from exportd.formats.base import FormatSpec, TabularWriter
from exportd.formats.markup import HtmlWriter, MarkdownWriter
from exportd.formats.parquet import ParquetWriter
from exportd.formats.text import CsvWriter, JsonWriter, NdjsonWriter, TsvWriter
from exportd.formats.xlsx import XlsxWriter

XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

FORMATS: dict[str, FormatSpec] = {
    spec.name: spec
    for spec in [
        FormatSpec("csv", "csv", "text/csv; charset=utf-8", CsvWriter),
        FormatSpec("tsv", "tsv", "text/tab-separated-values; charset=utf-8", TsvWriter),
        FormatSpec("ndjson", "ndjson", "application/x-ndjson", NdjsonWriter),
        FormatSpec("json", "json", "application/json", JsonWriter),
        FormatSpec(
            "parquet", "parquet", "application/vnd.apache.parquet", ParquetWriter, container=True
        ),
        FormatSpec(
            "xlsx", "xlsx", XLSX_TYPE, XlsxWriter, container=True, row_limit=XlsxWriter.max_rows
        ),
        FormatSpec("html", "html", "text/html; charset=utf-8", HtmlWriter, document=True),
        FormatSpec("markdown", "md", "text/markdown; charset=utf-8", MarkdownWriter, document=True),
        FormatSpec("pdf", "pdf", "application/pdf", None, document=True, container=True),
    ]
}
"""Every format by name: the tabular ones have a `writer`; `document` ones can hold a
rendered document."""

TABULAR_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.writer is not None)
DOCUMENT_FORMATS = tuple(name for name, spec in FORMATS.items() if spec.document)


def format_spec(name: str) -> FormatSpec:
    try:
        return FORMATS[name]
    except KeyError:
        known = ", ".join(FORMATS)
        raise PermanentError(
            f"unknown format {name!r} (known: {known})", code="invalid_format"
        ) from None


__all__ = [
    "DOCUMENT_FORMATS",
    "FORMATS",
    "TABULAR_FORMATS",
    "CsvWriter",
    "FormatSpec",
    "HtmlWriter",
    "JsonWriter",
    "MarkdownWriter",
    "NdjsonWriter",
    "ParquetWriter",
    "TabularWriter",
    "TsvWriter",
    "XlsxWriter",
    "format_spec",
]
