"""Exporters: the registry, the `@exporter` decorator and the built-ins."""

from exportd.exporters.registry import (
    ENTRY_POINT_GROUP,
    Encoded,
    ExportContext,
    ExporterSpec,
    NamedBatch,
    NoParams,
    Registry,
    exporter,
    load_all,
    load_app,
    registry,
)
from exportd.formats import Document

__all__ = [
    "ENTRY_POINT_GROUP",
    "Document",
    "Encoded",
    "ExportContext",
    "ExporterSpec",
    "NamedBatch",
    "NoParams",
    "Registry",
    "exporter",
    "load_all",
    "load_app",
    "registry",
]
