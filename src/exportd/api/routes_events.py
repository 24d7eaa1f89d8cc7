"""Server-Sent Events: `/v1/exports/{id}/events` (one job, ends after its terminal event)
and `/v1/events` (all of the caller's jobs). Every message has an `id:`; reconnecting
with `Last-Event-ID` replays what was missed from the events table."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Hashable
from functools import partial
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds
from exportd.api.openapi import problems
from exportd.api.validation import OwnerName
from exportd.errors import JobNotFound
from exportd.events import EventHub, Subscription
from exportd.events.hub import tick
from exportd.jobs import TERMINAL, Event, Progress, Status
from exportd.runtime import Runtime

router = APIRouter(prefix="/v1", tags=["events"], dependencies=[KnownPathIds])
T = TypeVar("T")


class SharedReads:
    """Identical reads made by many streams at once (500 watchers connecting to one job)
    share one query instead of one each. A stream joins only a read that started after
    its subscription was taken: what that read returns is then at least as new as what
    the stream's own read would have been, so nothing can fall between the read and the
    live events. Use from the event loop only."""

    def __init__(self) -> None:
        self._running: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}

    async def read(self, key: Hashable, subscription: Subscription, fn: Callable[[], T]) -> T:
        running = self._running.get(key)
        if running is not None and running[0] > subscription.tick:
            result: T = await asyncio.shield(running[1])
            return result
        future = asyncio.ensure_future(run_in_threadpool(fn))
        self._running[key] = (tick(), future)
        future.add_done_callback(lambda done: self._forget(key, done))
        result = await asyncio.shield(future)
        return result

    def _forget(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._running.get(key, (0, None))[1] is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved, so an unawaited failure is not logged as lost


SHARED = SharedReads()

EVENT_DATA = {
    "type": "object",
    "required": ["job_id", "type", "at"],
    "properties": {
        "job_id": {"type": "string"},
        "type": {"type": "string", "description": "created, started, progress, completed, ..."},
        "at": {"type": "string", "format": "date-time"},
        "status": {"type": "string"},
        "percent": {"type": ["number", "null"]},
    },
}
EVENT_STREAM: dict[str, Any] = {
    "description": "Server-Sent Events; each message's `data` is one job event as JSON",
    "content": {
        "text/event-stream": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "event": {"type": "string"},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": EVENT_DATA,
                    },
                },
            }
        }
    },
}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def is_terminal(event: Event) -> bool:
    return event.data.get("status") in TERMINAL and event.type != "progress"


_ENCODED: dict[tuple[str, int], bytes] = {}


def encode(event: Event) -> bytes:
    """The SSE message for `event`, encoded once however many streams send it."""
    key = (event.job_id, event.id)  # ids are per database; job ids are unique
    message = _ENCODED.get(key)
    if message is None:
        if len(_ENCODED) >= 10_000:
            _ENCODED.clear()
        message = _ENCODED[key] = _encode(event)
    return message


def _encode(event: Event) -> bytes:
    data: dict[str, object] = {
        "job_id": event.job_id,
        "type": event.type,
        "at": event.created_at.isoformat(),
    }
    data.update(event.data)
    if event.type == "progress":
        data["percent"] = Progress(event.data["done"], event.data.get("total")).percent
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.type.encode(), orjson.dumps(data))


async def follow(
    request: Request,
    runtime: Runtime,
    subscription: Subscription,
    *,
    after: int,
    job_id: str | None = None,
    owner: OwnerName | None = None,
    finished: bool = False,
) -> AsyncIterator[bytes]:
    """Replay what came after `after`, then stream live events from `subscription` (taken
    before the job was read, so nothing falls in between). `finished`: the job was
    already terminal when read, so nothing follows the replay."""
    hub: EventHub = request.app.state.hub
    keepalive = runtime.settings.sse_keepalive_seconds
    last = after
    try:
        yield b"retry: 2000\n\n"
        while True:  # replay from the table first (the hub's queue fills meanwhile)
            since = last
            missed = await SHARED.read(
                ("events", since, job_id, owner),
                subscription,
                partial(runtime.store.events_after, since, job_id=job_id, owner=owner),
            )
            for event in missed:
                last = event.id
                yield encode(event)
                if job_id is not None and is_terminal(event):
                    return
            if len(missed) < 500:
                break
        if finished:
            return
        # A disconnect ends this generator (StreamingResponse cancels or fails the send),
        # so it is not polled per event: that cost grows with every watcher.
        while True:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), keepalive)
            except TimeoutError:
                if job_id is not None and not await _exists(runtime, job_id):
                    return
                yield b": keep-alive\n\n"
                continue
            if event.id <= last:
                continue
            last = event.id
            yield encode(event)
            if job_id is not None and is_terminal(event):
                return
    finally:
        hub.unsubscribe(subscription)


async def _exists(runtime: Runtime, job_id: str) -> bool:
    try:
        await run_in_threadpool(runtime.store.get, job_id)
    except JobNotFound:
        return False
    return True


MAX_EVENT_ID = 2**63 - 1
EventId = Annotated[int, Field(ge=0, le=MAX_EVENT_ID)]


def parse_event_id(header: str | None) -> int | None:
    """A `Last-Event-ID` that is a plain ASCII decimal within 63 bits, else None: the
    header is ignored (the stream starts as without it) rather than refused, so that a
    browser's EventSource, which sends back whatever id it last saw, always reconnects."""
    value = (header or "").strip()
    if not value or len(value) > 19 or not (value.isascii() and value.isdigit()):
        return None
    number = int(value)
    return number if number <= MAX_EVENT_ID else None


def _start(last_event_id: str | None, query_value: int | None) -> int:
    parsed = parse_event_id(last_event_id)
    return parsed if parsed is not None else query_value or 0


@router.get(
    "/exports/{job_id}/events",
    response_class=StreamingResponse,
    responses={200: EVENT_STREAM, **problems(404, 422)},
)
async def job_events(
    job_id: str,
    request: Request,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[EventId | None, Query(description="like Last-Event-ID")] = None,
) -> StreamingResponse:
    hub: EventHub = request.app.state.hub
    subscription = hub.subscribe(job_id=job_id)
    try:
        job = await SHARED.read(
            ("job", job_id, principal.scope),
            subscription,
            lambda: runtime.store.get(job_id, principal.scope),
        )
    except BaseException:
        hub.unsubscribe(subscription)
        raise
    start = _start(last_event_id, after)
    stream = follow(
        request,
        runtime,
        subscription,
        after=start,
        job_id=job.id,
        finished=job.status.terminal,
    )
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get(
    "/events", response_class=StreamingResponse, responses={200: EVENT_STREAM, **problems(422)}
)
async def owner_events(
    request: Request,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[EventId | None, Query(description="like Last-Event-ID")] = None,
) -> StreamingResponse:
    start = _start(last_event_id, after)
    if start == 0 and parse_event_id(last_event_id) is None and after is None:
        start = await run_in_threadpool(runtime.store.last_event_id)  # only what comes next
    subscription = request.app.state.hub.subscribe(owner=principal.scope)
    stream = follow(request, runtime, subscription, after=start, owner=principal.scope)
    return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)


__all__ = ["Status", "router"]
