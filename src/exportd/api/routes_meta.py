"""Health, readiness, metrics and the list of exporters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, bearer, get_principal
from exportd.api.openapi import params_schema, problems
from exportd.api.problems import Problem
from exportd.api.schemas import ExporterOut
from exportd.errors import StoreError
from exportd.formats import FORMATS
from exportd.observability.metrics import CONTENT_TYPE_LATEST, render
from exportd.runtime import Runtime

router = APIRouter()


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


READY_TIMEOUT_SECONDS = 5.0


def _check_store(runtime: Runtime) -> None:
    runtime.store.ping()
    if not runtime.store.migrations_current():
        raise StoreError("migrations pending: run `exportd migrate`")


async def _check(check: Callable[[], None]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(run_in_threadpool(check), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {READY_TIMEOUT_SECONDS:g} s"}
    except Exception as exc:
        return {"ok": False, "detail": str(exc)[:500]}
    return {"ok": True}


@router.get("/readyz", tags=["health"], responses=problems(503))
async def readyz(runtime: CurrentRuntime) -> dict[str, Any]:
    """The job store answers with a current schema, and the artifact storage answers;
    otherwise `503` with a problem naming what failed."""
    store, storage = await asyncio.gather(
        _check(partial(_check_store, runtime)), _check(runtime.storage.ping)
    )
    checks = {"store": store, "storage": storage}
    failed = [name for name, check in checks.items() if not check["ok"]]
    if failed:
        detail = "; ".join(f"{name}: {checks[name]['detail']}" for name in failed)
        raise Problem(503, "not_ready", f"not ready: {detail}", failed=failed, checks=checks)
    return {"status": "ready", "checks": checks}


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
async def metrics(request: Request, runtime: CurrentRuntime) -> Response:
    """This process's metrics and the store's queue depth and stored bytes, in the
    Prometheus text format. Needs an admin token unless `EXPORTD_METRICS_PUBLIC=true`."""
    if not request.app.state.observability.metrics_public:
        principal = await get_principal(request, await bearer(request))
        if not principal.admin:
            raise Problem(403, "forbidden", "metrics need an admin token")
    body = await run_in_threadpool(render, runtime.store)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


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
