"""`RequestContext`: the outermost ASGI middleware of the API. Every request gets an id
— the caller's `X-Request-ID` when it is sane (1 to 128 of `A-Z a-z 0-9 . _ : - + = @ /`,
starting with a letter or digit), else a new one — bound to every line logged while it
is served and returned as `X-Request-ID` on every response, errors included. Each
request is also one access line (health checks and scrapes at DEBUG) and one
observation of `exportd_http_request_duration_seconds`."""

from __future__ import annotations

import logging
import re
import time
import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exportd.observability import metrics

log = logging.getLogger("exportd.api.requests")

HEADER = b"x-request-id"
SANE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+=@/-]{0,127}$")
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def request_id(scope: Scope) -> str:
    """The caller's request id if it is sane, else a new one."""
    for name, value in scope.get("headers") or ():
        if name == HEADER:
            text = bytes(value).decode("latin-1").strip()
            if SANE.match(text):
                return text
            break
    return uuid.uuid4().hex


def route_of(scope: Scope) -> str:
    """The matched route's template (`/v1/exports/{job_id}`), so labels stay few."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        status = 500
        started_at = time.perf_counter()
        responded = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [*message.get("headers", ()), (HEADER, rid.encode())]
            await send(message)

        # bind/reset rather than `bound_contextvars`, which first copies every context
        # variable to restore them (a measurable share of a small request's time).
        bound = structlog.contextvars.bind_contextvars(request_id=rid)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error")
            if responded:
                raise
            await _internal_error(send, scope, rid)
        finally:
            _record(scope, status, time.perf_counter() - started_at)
            structlog.contextvars.reset_contextvars(**bound)


def _record(scope: Scope, status: int, seconds: float) -> None:
    method, path = scope.get("method", ""), scope.get("path", "")
    metrics.HTTP_DURATION.labels(method, route_of(scope), str(status)).observe(seconds)
    level = logging.DEBUG if path in QUIET_PATHS and status < 500 else logging.INFO
    log.log(
        level,
        "%s %s %s",
        method,
        path,
        status,
        extra={"method": method, "path": path, "status": status, "ms": round(seconds * 1000, 1)},
    )


async def _internal_error(send: Send, scope: Scope, rid: str) -> None:
    body = orjson.dumps(
        {
            "type": "https://exportd.dev/problems/internal_error",
            "title": "Internal server error",
            "status": 500,
            "code": "internal_error",
            "detail": "the server failed to answer; the request id names it in the logs",
            "instance": scope.get("path", ""),
            "request_id": rid,
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (HEADER, rid.encode()),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})
