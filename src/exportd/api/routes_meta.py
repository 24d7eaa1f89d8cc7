"""Health, readiness, metrics and the list of exporters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from exportd.api.auth import CurrentPrincipal, CurrentRuntime
from exportd.api.openapi import params_schema
from exportd.api.schemas import ExporterOut
from exportd.formats import FORMATS

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    tags=["health"],
    responses={
        503: {
            "description": "not ready",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string"}, "detail": {"type": "string"}},
                    }
                }
            },
        }
    },
)
def readyz(runtime: CurrentRuntime) -> Any:
    """The database answers and its schema is current."""
    try:
        runtime.store.ping()
        current = runtime.store.migrations_current()
    except Exception as exc:
        body = {"status": "unavailable", "detail": str(exc)}
        return JSONResponse(body, 503)
    if not current:
        return JSONResponse({"status": "unavailable", "detail": "migrations pending"}, 503)
    return {"status": "ready"}


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
def metrics(runtime: CurrentRuntime) -> str:
    """Jobs by status, in Prometheus text format."""
    counts = runtime.store.count_by_status()
    lines = ["# HELP exportd_jobs Jobs in the store by status.", "# TYPE exportd_jobs gauge"]
    for status in ("queued", "running", "completed", "failed", "cancelled"):
        lines.append(f'exportd_jobs{{status="{status}"}} {counts.get(status, 0)}')
    return "\n".join(lines) + "\n"


@router.get("/v1/exporters", tags=["exporters"], response_model=list[ExporterOut])
def list_exporters(principal: CurrentPrincipal, runtime: CurrentRuntime) -> list[ExporterOut]:
    """Exporters this server can run, with their params JSON Schema and formats."""
    return [
        ExporterOut(
            name=spec.name,
            description=spec.description,
            formats=[f for f in spec.formats if f in FORMATS],
            params_schema=params_schema(spec, runtime.settings),
        )
        for spec in runtime.registry
    ]
