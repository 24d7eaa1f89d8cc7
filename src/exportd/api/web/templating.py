"""Rendering pages: the Jinja2 environment (autoescaped, templates in the package), links
to static files that change name with their content (so browsers may cache them), and
the headers every page gets."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse

from exportd.api.web import text

HERE = Path(__file__).parent
STATIC = HERE / "static"

environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters.update(text.FILTERS)


@cache
def static_url(name: str) -> str:
    """`/static/<name>?v=<hash of its content>`; raises if the file is missing."""
    digest = hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:12]
    return f"/static/{name}?v={digest}"


environment.globals["static"] = static_url


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """The page, never cached (it shows one person's exports)."""
    context.setdefault("user", None)
    context.setdefault("flash", None)
    body = environment.get_template(template).render(request=request, **context)
    headers = {"Cache-Control": "no-store"}
    return HTMLResponse(body, status_code=status, headers=headers)
