"""The `document` exporter through a real worker: Jinja2 templates rendered to PDF
(checked with pypdf), HTML (escaped) and Markdown."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pypdf
import pytest
from sql_sources import fill, order_rows, sources_json

from conftest import wait_for_status
from exportd.jobs import Job, NewJob, Status
from exportd.runtime import Runtime

RESUME = {
    "name": "Ada Lovelace",
    "headline": "Analyst & programmer",
    "email": "ada@example.org",
    "summary": "Wrote the first published algorithm <script>alert(1)</script>.",
    "experience": [
        {
            "role": "Translator",
            "company": "Taylor's Scientific Memoirs",
            "when": "1843",
            "points": ["Notes A to G on the Analytical Engine", "Bernoulli numbers | table"],
        }
    ],
    "skills": ["mathematics", "poetical science"],
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The job store of these tests is always SQLite."""
    return f"sqlite:///{tmp_path / 'exportd.db'}"


@pytest.fixture
def runtime(make_runtime: Callable[..., Runtime], tmp_path: Path) -> Runtime:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    fill(url, order_rows(12))
    runtime = make_runtime(sources=sources_json(url))
    runtime.start_worker(concurrency=2)
    return runtime


def export(runtime: Runtime, fmt: str, **params: Any) -> tuple[Job, bytes]:
    job = runtime.store.enqueue(
        NewJob(owner="alice", exporter="document", params=params, format=fmt)
    )
    done = wait_for_status(runtime.store, job.id, Status.COMPLETED, Status.FAILED)
    if done.status != Status.COMPLETED:
        return done, b""
    with runtime.storage.open_read(done.artifacts[0].storage_key) as handle:
        return done, handle.read()


def test_report_pdf_holds_the_query_rows(runtime: Runtime) -> None:
    """A report from a named query is a valid letter-size PDF whose text has the rows."""
    done, data = export(
        runtime, "pdf", title="Paid orders", source="shop", query="all", page_size="letter"
    )
    assert done.status == Status.COMPLETED, done.error
    assert data.startswith(b"%PDF-")
    assert done.artifacts[0].content_type == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(data))
    # Rows hold CJK text, set in a two-byte fallback font that pypdf decodes with NULs.
    text = "".join(page.extract_text() for page in reader.pages).replace("\x00", "")
    assert "Paid orders" in text
    assert "9007199254740999" in text  # the first order's id, beyond 2^53
    assert "12 rows." in text
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (612, 792)


def test_resume_is_one_a4_page(runtime: Runtime) -> None:
    """The shipped résumé template renders the data on one A4 page."""
    done, data = export(runtime, "pdf", template="resume", data=RESUME)
    assert done.status == Status.COMPLETED, done.error
    reader = pypdf.PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    text = reader.pages[0].extract_text()
    assert "Ada Lovelace" in text
    assert "Bernoulli numbers | table" in text
    box = reader.pages[0].mediabox
    assert (round(float(box.width)), round(float(box.height))) == (595, 842)


def test_html_escapes_script_in_data(runtime: Runtime) -> None:
    """Data holding `<script>` is escaped in the HTML document, both from params and rows."""
    done, data = export(
        runtime, "html", data={"intro": "<script>alert('x')</script>"}, source="shop", query="all"
    )
    assert done.status == Status.COMPLETED, done.error
    html = data.decode()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # from the rows


def test_markdown_report_escapes_table_cells(runtime: Runtime) -> None:
    """The Markdown report is a table whose cells escape pipes, newlines and markup."""
    done, data = export(runtime, "markdown", title="Orders", source="shop", query="all")
    assert done.status == Status.COMPLETED, done.error
    lines = data.decode().splitlines()
    assert lines[0] == "# Orders"
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + 12
    assert all(line.count("|") - line.count("\\|") == 8 for line in table)
    assert any("new<br>line" in line for line in table)
    assert "<script>" not in data.decode()


@pytest.mark.parametrize(
    ("fmt", "params", "code"),
    [
        ("html", {"template": "missing"}, "unknown_template"),
        ("html", {"template": "../etc/passwd"}, "invalid_params"),
        ("csv", {"template": "report"}, "invalid_format"),
        ("html", {"source": "shop", "query": "nope"}, "unknown_query"),
    ],
)
def test_bad_document_jobs_fail_permanently(
    runtime: Runtime, fmt: str, params: dict[str, Any], code: str
) -> None:
    """An unknown template, a path as a template name, a tabular format or an unknown
    query fail the job at once with a stable code."""
    done, _ = export(runtime, fmt, **params)
    assert done.error is not None
    assert (done.status, done.error.code, done.attempt) == (Status.FAILED, code, 1)
