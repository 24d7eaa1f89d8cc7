"""Errors as RFC 9457 problem details (`application/problem+json`) with a stable `code`."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=PROBLEM)


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
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        fields = ", ".join(".".join(str(p) for p in e["loc"][1:]) or "body" for e in errors)
        problem = Problem(422, "validation_error", f"invalid request: {fields}", errors=errors)
        return problem_response(request, problem)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers) if exc.headers else None
        problem = Problem(exc.status_code, code, str(exc.detail), headers=headers)
        return problem_response(request, problem)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(ExportdError, on_exportd)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
