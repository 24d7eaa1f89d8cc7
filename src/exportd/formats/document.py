"""Documents: what a `document` exporter returns, and how it is written as HTML,
Markdown or PDF (WeasyPrint renders the HTML with its print CSS)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

from exportd.errors import PermanentError
from exportd.formats.sink import Stream

PAGE_SIZES = ("A4", "letter")


@dataclass(frozen=True)
class Document:
    """A rendered document. `markup` says what `text` is; HTML can be written as `html`
    or `pdf`, Markdown as `markdown`. `base_url` resolves relative links and images in
    HTML (a folder URL); `page_size` is used for PDF."""

    text: str
    markup: Literal["html", "markdown"] = "html"
    page_size: str = "A4"
    base_url: str | None = None


SOURCE_MARKUP = {"html": "html", "pdf": "html", "markdown": "markdown"}


def write_document(document: Document, fmt: str, stream: Stream) -> None:
    """Write `document` as `fmt` into `stream` and close it."""
    needed = SOURCE_MARKUP.get(fmt)
    if needed is None:
        raise PermanentError(f"a document cannot be written as {fmt!r}", code="invalid_format")
    if document.markup != needed:
        raise PermanentError(
            f"a {document.markup} document cannot be written as {fmt!r}", code="invalid_format"
        )
    if fmt == "pdf":
        _write_pdf(document, stream)
    else:
        stream.write(document.text.encode())
    stream.close()


def _weasyprint() -> Any:
    """WeasyPrint, imported on first use (it loads pango and fonts). Its import-time
    notice that a system library (HarfBuzz-Subset) is missing is no reason to fail."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "HarfBuzz-Subset", DeprecationWarning)
        import weasyprint  # type: ignore[import-untyped]
    return weasyprint


def _write_pdf(document: Document, stream: Stream) -> None:
    weasyprint = _weasyprint()
    if document.page_size not in PAGE_SIZES:
        raise PermanentError(
            f"unknown page size {document.page_size!r} (use A4 or letter)", code="invalid_params"
        )
    page = weasyprint.CSS(string=f"@page {{ size: {document.page_size}; }}")
    html = weasyprint.HTML(string=document.text, base_url=document.base_url)
    stream.write(html.write_pdf(stylesheets=[page]))
