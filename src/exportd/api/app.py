"""The FastAPI application: `create_app(runtime)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exportd.api import (
    hot,
    openapi,
    problems,
    routes_batches,
    routes_events,
    routes_exports,
    routes_files,
    routes_history,
    routes_meta,
    routes_usage,
    routes_webhooks,
)
from exportd.api.limits import BodySizeLimit
from exportd.api.web import site
from exportd.events import EventHub
from exportd.observability import ObservabilitySettings
from exportd.observability.requests import RequestContext
from exportd.runtime import Runtime

log = logging.getLogger(__name__)


SWEEP_CHECK_SECONDS = 60.0


async def sweep_periodically(runtime: Runtime) -> None:
    """Run the sweeps (leftover files, expired exports) from this process too; the
    store's sweep leases keep processes from running one twice."""
    sweeper = runtime.sweeper()
    while True:
        await asyncio.sleep(min(SWEEP_CHECK_SECONDS, runtime.settings.sweep_interval_seconds))
        try:
            await asyncio.to_thread(sweeper.sweep)
        except Exception:
            log.warning("sweep failed", exc_info=True)


def create_app(
    runtime: Runtime,
    *,
    workers: bool = True,
    observability: ObservabilitySettings | None = None,
) -> FastAPI:
    """The API; with `workers`, this process also runs `settings.concurrency` job slots.
    It always sends the outbox (webhooks, e-mail) unless `EXPORTD_DELIVERY_CONCURRENCY=0`.
    `observability` (default: from the environment) says whether `/metrics` is public."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = EventHub(runtime.store, poll_interval=runtime.settings.event_poll_interval)
        hub.start(asyncio.get_running_loop())
        app.state.hub = hub
        if workers:
            runtime.start_worker()
        runtime.start_deliverer()  # with or without worker slots: some process must send
        sweeper = asyncio.create_task(sweep_periodically(runtime))
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.to_thread(runtime.stop_workers)
            await asyncio.to_thread(runtime.stop_deliverers)
            hub.stop()

    app = FastAPI(
        title="exportd",
        version="0.1.0",
        summary="Durable background export jobs",
        lifespan=lifespan,
        docs_url=None,  # served offline by the web package
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.observability = observability or ObservabilitySettings()
    problems.install(app)
    openapi.install(app, runtime.registry, runtime.settings)
    for module in (
        routes_meta,
        routes_exports,
        routes_events,
        routes_batches,
        routes_files,
        routes_usage,
        routes_history,
        routes_webhooks,
    ):
        app.include_router(module.router)
    hot.install(app)  # innermost: inside the security headers and the request id
    site.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_body_bytes)
    app.add_middleware(RequestContext)  # outermost: every response carries the request id
    return app
