"""Mounting the web page and the offline API docs on the app."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from exportd.api.web import actions, create, docs, pages, signin, users
from exportd.api.web.security import SecurityHeaders
from exportd.api.web.templating import STATIC


def install(app: FastAPI) -> None:
    """Routes, static files, the sign-in redirect and the security headers. The app must
    be made with `docs_url=None, redoc_url=None` (these docs replace FastAPI's)."""
    users.install(app)
    for module in (signin, create, pages, actions, docs):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(SecurityHeaders)
