"""The FastAPI application: `create_app(runtime)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exportd.api import (
    openapi,
    problems,
    routes_batches,
    routes_events,
    routes_exports,
    routes_files,
    routes_meta,
)
from exportd.api.limits import BodySizeLimit
from exportd.events import EventHub
from exportd.runtime import Runtime
from exportd.store.retention import expire

log = logging.getLogger(__name__)


SWEEP_SECONDS = 60.0


async def sweep_expired(runtime: Runtime) -> None:
    """Remove the files of exports past their `ttl_seconds`, once a minute."""
    while True:
        await asyncio.sleep(SWEEP_SECONDS)
        try:
            removed = await asyncio.to_thread(expire, runtime.store, runtime.storage)
        except Exception:
            log.warning("removing expired files failed", exc_info=True)
        else:
            if removed:
                log.info("removed %d expired files", removed)


def create_app(runtime: Runtime, *, workers: bool = True) -> FastAPI:
    """The API; with `workers`, this process also runs `settings.concurrency` job slots."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub = EventHub(runtime.store, poll_interval=runtime.settings.event_poll_interval)
        hub.start(asyncio.get_running_loop())
        app.state.hub = hub
        if workers:
            runtime.start_worker()
        sweeper = asyncio.create_task(sweep_expired(runtime))
        try:
            yield
        finally:
            sweeper.cancel()
            await asyncio.to_thread(runtime.stop_workers)
            hub.stop()

    app = FastAPI(
        title="exportd",
        version="0.1.0",
        summary="Durable background export jobs",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    problems.install(app)
    openapi.install(app, runtime.registry, runtime.settings)
    for module in (routes_meta, routes_exports, routes_events, routes_batches, routes_files):
        app.include_router(module.router)
    app.add_middleware(BodySizeLimit, max_bytes=runtime.settings.max_body_bytes)
    return app
