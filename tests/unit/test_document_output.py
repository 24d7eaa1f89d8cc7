"""A document is its whole file: nothing is written after it, whatever the compression."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import brotli  # type: ignore[import-untyped]
import pytest
import zstandard

from exportd.formats import Document, Output, plan_output
from exportd.storage import LocalStorage

DECOMPRESS = {
    "none": lambda data: data,
    "gzip": gzip.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    "brotli": brotli.decompress,
}


@pytest.mark.parametrize("compression", list(DECOMPRESS))
@pytest.mark.parametrize(
    ("fmt", "document"),
    [
        ("html", Document("<!doctype html><p>Hello</p>\n")),
        ("markdown", Document("# Hello\n", markup="markdown")),
    ],
)
def test_a_document_file_holds_exactly_the_document(
    tmp_path: Path, fmt: str, document: Document, compression: str
) -> None:
    """html and markdown documents, plain or compressed, hold the rendered text and no
    table page of the format's tabular writer after it."""
    storage = LocalStorage(tmp_path)
    plan = plan_output(
        job_id="d",
        format=fmt,
        compression=compression,
        options={},
        filename=None,
        allowed=["html", "markdown"],
        document=True,
    )
    output = Output(plan, storage, key_prefix="jobs/d/1", tag="claimd")
    output.write_document(document)
    (published,) = output.publish(datetime(2026, 1, 1, tzinfo=UTC))
    with storage.open_read(published.key) as handle:
        assert DECOMPRESS[compression](handle.read()) == document.text.encode()
