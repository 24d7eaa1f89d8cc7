"""Markup tables: an HTML page holding one table, and a Markdown (GFM) table.

Every value is escaped: HTML text through `html.escape`; Markdown cells additionally
escape `\\` and `|`, write newlines as `<br>`, escape `<`, `>` and `&` as entities (no
raw HTML, no `<http://…>` autolink) and backslash-escape the link and image syntax
`[`, `]`, `(`, `)` and `!` and the `:` of `://` (no GFM URL autolink either), so data
can neither break the table nor inject markup: `[x](javascript:alert(1))` and
`![](http://evil/x.png)` render as the text they are. (GFM still links a bare
`www.example.com` or e-mail address; such a link shows its own address as its text.)
Null is an empty cell (in HTML it carries `class="null"`)."""

from __future__ import annotations

import html
from abc import abstractmethod

import pyarrow as pa

from exportd.formats.base import TabularWriter
from exportd.formats.sink import Stream
from exportd.formats.values import to_text

PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: .25rem .5rem; text-align: left;
  vertical-align: top; white-space: pre-wrap; }}
th {{ background: #f4f4f4; }}
</style>
</head>
<body>
<table>
"""
PAGE_TAIL = "</tbody>\n</table>\n</body>\n</html>\n"


class _TableWriter(TabularWriter):
    """A table written head first, then rows in slices."""

    _started = False

    def _write(self, batch: pa.RecordBatch) -> None:
        if not self._started:
            self._start(batch.schema.names)
        for part in self.row_slices(batch):
            self._rows(part)

    @abstractmethod
    def _start(self, names: list[str]) -> None: ...

    @abstractmethod
    def _rows(self, batch: pa.RecordBatch) -> None: ...


class HtmlWriter(_TableWriter):
    """A complete HTML page with one `<table>`: a header row, then one row per record."""

    title = "Export"

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._started = False

    def _start(self, names: list[str]) -> None:
        self._started = True
        head = "".join(f"<th>{html.escape(name)}</th>" for name in names)
        page = PAGE_HEAD.format(title=html.escape(self.title))
        self.stream.write(f"{page}<thead>\n<tr>{head}</tr>\n</thead>\n<tbody>\n".encode())

    def _rows(self, batch: pa.RecordBatch) -> None:
        lines = []
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            cells = "".join(
                '<td class="null"></td>'
                if value is None
                else f"<td>{html.escape(to_text(value), quote=False)}</td>"
                for value in row
            )
            lines.append(f"<tr>{cells}</tr>\n")
        self.stream.write("".join(lines).encode())

    def close(self) -> None:
        if not self._started:
            self._start(self.schema.names if self.schema is not None else [])
        self.stream.write(PAGE_TAIL.encode())
        super().close()


_MARKDOWN_ESCAPES = str.maketrans(
    {"\\": "\\\\", "|": "\\|", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": ""}
    | {char: f"\\{char}" for char in "[]()!"}
)


def markdown_cell(text: str) -> str:
    """`text` as the content of a GFM table cell that renders as exactly that text."""
    escaped = text.translate(_MARKDOWN_ESCAPES).replace("://", "\\://")
    return escaped.replace("\n", "<br>")


class MarkdownWriter(_TableWriter):
    """A GitHub-flavoured Markdown table: header row, delimiter row, one row per record."""

    def __init__(self, stream: Stream, *, compression: str = "none") -> None:
        super().__init__(stream, compression=compression)
        self._started = False

    def _start(self, names: list[str]) -> None:
        self._started = True
        if not names:
            return
        head = " | ".join(markdown_cell(name) for name in names)
        rule = " | ".join("---" for _ in names)
        self.stream.write(f"| {head} |\n| {rule} |\n".encode())

    def _rows(self, batch: pa.RecordBatch) -> None:
        lines = []
        for row in zip(*(column.to_pylist() for column in batch.columns), strict=True):
            cells = " | ".join(markdown_cell(to_text(value)) for value in row)
            lines.append(f"| {cells} |\n")
        self.stream.write("".join(lines).encode())

    def close(self) -> None:
        if not self._started:
            self._start(self.schema.names if self.schema is not None else [])
        super().close()
