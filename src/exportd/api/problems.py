"""Errors as RFC 9457 problem details (`application/problem+json`) with a stable `code`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from exportd.api.validation import text_reason
from exportd.errors import (
    ExportdError,
    InvalidTransition,
    JobFailure,
    JobNotFound,
    LinkExpired,
    LinkTampered,
    StoreError,
)

PROBLEM = "application/problem+json"
SOURCES = ("body", "query", "path", "header", "cookie")
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class Problem(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = headers or {}
        self.extra = extra


TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    416: "Range not satisfiable",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def _clean(value: Any) -> Any:
    """`value` with text that UTF-8 cannot encode (unpaired surrogates echoed from the
    request) replaced, so that a problem about bad input can always be sent."""
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode() if text_reason(value) else value
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": f"https://exportd.dev/problems/{problem.code}",
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        "instance": request.url.path,
        **problem.extra,
    }
    return JSONResponse(_clean(body), problem.status, headers=problem.headers, media_type=PROBLEM)


def field_name(loc: Sequence[str | int]) -> str:
    """`params.rows` for a pydantic location; where the value came from (body, query,
    path, header) is left out."""
    inside = loc[1:] if loc and loc[0] in SOURCES else loc
    return ".".join(str(part) for part in inside) or str(loc[0] if loc else "body")


def field_errors(errors: Iterable[Any], prefix: Sequence[str | int] = ()) -> list[dict[str, Any]]:
    """Pydantic error details as the `errors` member of a problem."""
    return [
        {"loc": [*prefix, *e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]


def invalid(code: str, summary: str, errors: list[dict[str, Any]]) -> Problem:
    """A 422 whose detail says each field's reason: `summary: field: reason; ...`."""
    reasons = "; ".join(f"{field_name(e['loc'])}: {e['msg']}" for e in errors)
    return Problem(422, code, f"{summary}: {reasons}", errors=errors)


def invalid_field(loc: Sequence[str | int], msg: str, type_: str) -> Problem:
    return invalid(
        "validation_error", "invalid request", [{"loc": list(loc), "msg": msg, "type": type_}]
    )


METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method some route takes at this path (not only the first route's): each
    method is tried against the app's routes, however they are nested."""
    routes = request.app.router.routes
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes
        )
    ]
    return ", ".join(allowed)


def from_error(exc: ExportdError) -> Problem:
    if isinstance(exc, JobNotFound):
        return Problem(404, "not_found", "no such export job")
    if isinstance(exc, InvalidTransition):
        return Problem(409, "invalid_state", str(exc))
    if isinstance(exc, LinkTampered):
        return Problem(403, "link_invalid", str(exc))
    if isinstance(exc, LinkExpired):
        return Problem(410, "link_expired", str(exc))
    if isinstance(exc, JobFailure):
        status = 403 if exc.code == "forbidden" else 422
        return Problem(status, exc.code, exc.message)
    if isinstance(exc, StoreError):
        return Problem(503, "store_unavailable", "the job store is unavailable")
    return Problem(500, "internal_error", str(exc))


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_exportd(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ExportdError)
        return problem_response(request, from_error(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problem = invalid("validation_error", "invalid request", field_errors(exc.errors()))
        return problem_response(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        problem = Problem(exc.status_code, code, str(exc.detail), headers=headers)
        return problem_response(request, problem)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ExportdError, on_exportd)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
