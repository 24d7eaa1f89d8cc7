"""Formats: how rows and documents are written (writers, compression, parts, bundles)."""

from exportd.formats.base import FormatSpec, TabularWriter
from exportd.formats.bundle import FileEntry
from exportd.formats.document import Document
from exportd.formats.output import Output, OutputFile
from exportd.formats.plan import OutputPlan, plan_output
from exportd.formats.sink import COMPRESSIONS, HashingSink, Stream
from exportd.formats.writers import DOCUMENT_FORMATS, FORMATS, TABULAR_FORMATS, format_spec

__all__ = [
    "COMPRESSIONS",
    "DOCUMENT_FORMATS",
    "FORMATS",
    "TABULAR_FORMATS",
    "Document",
    "FileEntry",
    "FormatSpec",
    "HashingSink",
    "Output",
    "OutputFile",
    "OutputPlan",
    "Stream",
    "TabularWriter",
    "format_spec",
    "plan_output",
]
