"""`EventHub`: one reader of the events table per process, fanning new events out to any
number of live subscribers (SSE streams), so 500 watchers cost one query, not 500.

A thread waits on a `Waker` for the `events` channel, reads every event after its cursor
and hands them to the asyncio loop, which puts each into the queues of the subscribers it
matches (by job id or owner)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from dataclasses import dataclass, field

from exportd.events.wakeup import Waker
from exportd.jobs import Event
from exportd.observability.metrics import SSE_CONNECTIONS
from exportd.store import SqlJobStore

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
_ticks = itertools.count(1)


def tick() -> int:
    """The next value of a process-wide clock that orders subscriptions and reads."""
    return next(_ticks)


@dataclass(eq=False)
class Subscription:
    job_id: str | None
    owner: str | None
    queue: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    tick: int = field(default_factory=tick)
    """When it was taken, on the clock of `tick()`."""

    def matches(self, event: Event) -> bool:
        if self.job_id is not None and event.job_id != self.job_id:
            return False
        return self.owner is None or event.owner == self.owner


class EventHub:
    def __init__(self, store: SqlJobStore, *, poll_interval: float = 1.0) -> None:
        self.store = store
        self.waker = Waker(poll_interval, channel="events")
        self._subscriptions: set[Subscription] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cursor = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.cursor = self.store.last_event_id()
        self.waker.watch(self.store)
        self._thread = threading.Thread(target=self._follow, name="event-hub", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.waker.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def subscribe(self, *, job_id: str | None = None, owner: str | None = None) -> Subscription:
        subscription = Subscription(job_id, owner)
        self._subscriptions.add(subscription)
        SSE_CONNECTIONS.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            SSE_CONNECTIONS.dec()

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_new()
            except Exception:
                log.warning("event hub: reading events failed", exc_info=True)
            self.waker.wait()

    def _read_new(self) -> None:
        while True:
            events = self.store.events_after(self.cursor, limit=1000)
            if not events:
                return
            self.cursor = events[-1].id
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._dispatch, events)
            if len(events) < 1000:
                return

    def _dispatch(self, events: list[Event]) -> None:
        for subscription in list(self._subscriptions):
            for event in events:
                if subscription.matches(event):
                    try:
                        subscription.queue.put_nowait(event)
                    except asyncio.QueueFull:
                        subscription.overflowed = True
