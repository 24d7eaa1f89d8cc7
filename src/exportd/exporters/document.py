"""`document`: a Jinja2 template rendered with data → HTML, Markdown or PDF.

Templates are looked up in `EXPORTD_TEMPLATES_DIR` first, then among the ones shipped in
`exportd/templates` (`report`: a title and a table; `resume`: a one-page résumé). A
template `NAME` has one file per markup: `NAME.html.j2` (written as `html`, or as `pdf`
through WeasyPrint with the template's print CSS) and `NAME.md.j2` (written as
`markdown`). Autoescaping is always on; in Markdown templates the `md` filter also
escapes table pipes and newlines.

The template sees `title`, `data` (the job's `data` param), `rows` and `columns` (the
rows of a named query, when `source` and `query` are given, at most `max_rows`),
`generated_at`, `job_id` and `page_size`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import text

from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.exporters.registry import ExportContext, exporter
from exportd.exporters.sql import SqlParams, check_sql, resolve
from exportd.exporters.sql_session import snapshot
from exportd.formats import Document
from exportd.formats.markup import markdown_cell
from exportd.formats.values import to_text

if TYPE_CHECKING:
    import jinja2

TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$"
BUILTIN_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class DocumentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    template: Annotated[str, Field(pattern=TEMPLATE_NAME)] = Field(
        default="report",
        description="`report`, `resume`, or a template of EXPORTD_TEMPLATES_DIR",
    )
    title: str = Field(default="Report", description="the document's title")
    data: dict[str, Any] = Field(
        default_factory=dict, description="what the template shows (see its reference)"
    )
    source: str | None = Field(default=None, description="a SQL source, for `rows`")
    query: str | None = Field(default=None, description="a named query of `source`")
    params: dict[str, Any] = Field(default_factory=dict, description="the query's params")
    max_rows: Annotated[int, Field(ge=1, le=100_000)] = Field(
        default=10_000, description="more rows than this fail the export"
    )
    page_size: Literal["A4", "letter"] = Field(default="A4", description="for pdf")

    @model_validator(mode="after")
    def _query_needs_source(self) -> DocumentParams:
        if (self.source is None) != (self.query is None):
            raise ValueError("give both `source` and `query`, or neither")
        return self


def md_filter(value: Any) -> Markup:
    """Escape a value for Markdown (and HTML inside it)."""
    return Markup(markdown_cell(to_text(value)))


def environment(templates_dir: Path | None) -> jinja2.Environment:
    import jinja2  # here, not at the top: only document jobs render templates

    folders = [str(templates_dir)] if templates_dir is not None else []
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([*folders, str(BUILTIN_TEMPLATES)]),
        autoescape=True,
        trim_blocks=False,
    )
    env.filters["md"] = md_filter
    return env


def query_rows(
    params: DocumentParams, ctx: ExportContext
) -> tuple[list[str], list[dict[str, Any]]]:
    if params.source is None or params.query is None:
        return [], []
    sql_params = SqlParams(source=params.source, query=params.query, params=params.params)
    url, statement, values, source = resolve(sql_params, ctx)
    timeout = source.statement_timeout or ctx.settings.sql_statement_timeout
    with snapshot(url, timeout) as (conn, _deadline):
        result = conn.execute(text(statement), values)
        columns = list(result.keys())
        rows = [dict(row._mapping) for row in result.fetchmany(params.max_rows + 1)]
    if len(rows) > params.max_rows:
        raise PermanentError(
            f"a document holds at most {params.max_rows} rows", code="too_many_rows"
        )
    return columns, rows


def load_template(params: DocumentParams, settings: Settings, fmt: str) -> jinja2.Template:
    import jinja2

    name = f"{params.template}.{'md' if fmt == 'markdown' else 'html'}.j2"
    try:
        return environment(settings.templates_dir).get_template(name)
    except jinja2.TemplateNotFound:
        raise PermanentError(f"no template {name!r}", code="unknown_template") from None


def check_document(params: DocumentParams, settings: Settings) -> None:
    """Refuse at creation a template that exists in no markup, an unknown source or
    named query, or query params that do not bind."""
    try:
        load_template(params, settings, "html")
    except PermanentError:
        load_template(params, settings, "markdown")
    if params.source is not None and params.query is not None:
        check_sql(
            SqlParams(source=params.source, query=params.query, params=params.params), settings
        )


@exporter("document", params=DocumentParams, kind="document", check=check_document)
def document(params: DocumentParams, ctx: ExportContext) -> Document:
    """A Jinja2 template (report, resume or your own) rendered as HTML, Markdown or PDF."""
    import jinja2

    markup: Literal["html", "markdown"] = "markdown" if ctx.format == "markdown" else "html"
    template = load_template(params, ctx.settings, markup)
    ctx.step("reading rows")
    columns, rows = query_rows(params, ctx)
    ctx.step("rendering")
    try:
        rendered = template.render(
            title=params.title,
            data=params.data,
            rows=rows,
            columns=columns,
            generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            job_id=ctx.job_id,
            page_size=params.page_size,
        )
    except jinja2.TemplateError as exc:
        raise PermanentError(f"the template failed: {exc}", code="template_error") from exc
    folder = Path(template.filename or BUILTIN_TEMPLATES).parent
    return Document(rendered, markup, params.page_size, folder.as_uri() + "/")
