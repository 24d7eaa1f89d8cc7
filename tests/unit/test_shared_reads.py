"""`SharedReads`: streams that connect together share a read, but never one that began
before their own subscription (it could miss an event committed in between)."""

from __future__ import annotations

import asyncio
import threading

from exportd.api.routes_events import SharedReads
from exportd.events import Subscription


def test_streams_share_only_reads_that_began_after_they_subscribed() -> None:
    """A stream subscribed before a running read joins it; one subscribed after it began
    starts its own read."""
    calls: list[str] = []
    release = threading.Event()

    def read(name: str) -> str:
        calls.append(name)
        release.wait(5)
        return name

    async def scenario() -> list[str]:
        shared = SharedReads()
        early = Subscription("job", None)  # subscribed before the first read began
        first = asyncio.ensure_future(shared.read("k", early, lambda: read("first")))
        await asyncio.sleep(0.05)  # the first read is running now
        later = Subscription("job", None)  # subscribed while the first read was running
        also_early = asyncio.ensure_future(shared.read("k", early, lambda: read("unused")))
        late = asyncio.ensure_future(shared.read("k", later, lambda: read("second")))
        await asyncio.sleep(0.05)
        release.set()
        return list(await asyncio.gather(first, also_early, late))

    results = asyncio.run(scenario())
    assert results == ["first", "first", "second"]
    assert calls == ["first", "second"]


def test_a_failed_shared_read_fails_every_stream_that_joined_it() -> None:
    """The error of a shared read reaches every stream that waited for it."""

    async def scenario() -> list[BaseException | str]:
        shared = SharedReads()
        gate = threading.Event()

        def boom() -> str:
            gate.wait(5)
            raise LookupError("gone")

        sub = Subscription("job", None)
        first = asyncio.ensure_future(shared.read("k", sub, boom))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(shared.read("k", sub, lambda: "never"))
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(first, second, return_exceptions=True))

    first, second = asyncio.run(scenario())
    assert isinstance(first, LookupError) and isinstance(second, LookupError)
