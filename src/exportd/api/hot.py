"""`HotReads`: `GET /v1/exports/{job_id}` without FastAPI's routing and dependency
solving, for the request a client polls most.

It answers only what it can answer exactly as the route would: a bearer token that the
token cache already knows to be valid, an id the store could have made, a job the caller
may see. Everything else — no `Authorization` header (cookies), an unknown or invalid
token, a malformed id, a missing job, any other method or path — goes on to the route,
which answers it as always (401, 404, the problem details), so errors have one source.
The answer is the route's own: the same `job_out` body through `model_response`, and
the route recorded in the scope for the metrics' label. It sits inside the request-id,
body-size and security-header middleware, which see it as any other response.

On SQLite the job is read on the event loop's thread (`SqliteJobStore.read_now`, which
waits at most a few milliseconds for a busy file, then leaves the read to a thread):
with the read on a thread, the dozen GIL hand-overs of its driver calls cost the server
more CPU than the rest of the request. Measured with the case-7 load (50 connections,
one job, SQLite, two runs each): the server's CPU per request went from 2.75 and 3.02 ms
(this layer with its read on a thread) to 1.53 and 1.49 ms, and requests per second from
384 and 347 to 672 and 682; the minimal FastAPI endpoint took 0.86 and 0.82 ms and
answered 1,182 and 1,233 (bench/README.md, "Second pass, continued")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from exportd.api.routes_exports import model_response, router
from exportd.api.schemas import job_out
from exportd.api.validation import is_id, text_reason
from exportd.errors import JobNotFound, TransientStoreError
from exportd.jobs import Job
from exportd.store import SqliteJobStore

PATH = re.compile(r"/v1/exports/([^/]+)")
ROUTE_PATH = "/v1/exports/{job_id}"


class HotReads:
    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self.answered = 0
        """How many requests this path answered (the tests check that it is used)."""
        self._route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = PATH.fullmatch(scope["path"])
            if match is not None:
                response = await self._answer(scope, match[1])
                if response is not None:
                    scope["route"] = self._get_route()
                    self.answered += 1
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, job_id: str) -> Any:
        secret = _bearer(scope)
        if not secret or text_reason(secret) is not None:
            return None
        if not is_id(job_id) or text_reason(job_id) is not None:
            return None
        store = self.api.state.runtime.store
        known, token = store.cached_token(secret)
        if not known or token is None:
            return None
        owner = None if token.admin else token.owner

        def respond(read: Callable[[str, str | None], Job]) -> Any:
            try:
                return model_response(job_out(read(job_id, owner)))
            except JobNotFound:
                return None

        if isinstance(store, SqliteJobStore):
            # On this thread: a SQLite read is a few hundred microseconds, and a hop to
            # a thread costs more than that in GIL hand-overs (see the module's text).
            try:
                return respond(store.read_now)
            except TransientStoreError:  # the file is busy: wait for it on a thread
                pass
        return await run_in_threadpool(respond, store.get)

    def _get_route(self) -> APIRoute:
        if self._route is None:
            self._route = next(
                route
                for route in router.routes
                if isinstance(route, APIRoute)
                and route.path == ROUTE_PATH
                and "GET" in (route.methods or ())
            )
        return self._route


def _bearer(scope: Scope) -> str:
    """The bearer credentials of the request's `Authorization` header, as FastAPI's
    `HTTPBearer` reads them ('' when there are none)."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" else ""
    return ""


def install(app: FastAPI) -> None:
    app.add_middleware(HotReads, api=app)
