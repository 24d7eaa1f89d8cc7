"""Labels and history through the Python client (blocking and async) against a real
server: labels given at creation come back on the job and select it in `list` and
`iter_jobs`; `history` pages and `iter_history` give the job's events with actors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from conftest import LiveServer
from exportd import AsyncClient, Client
from exportd.client import HistoryEntry

Start = Callable[..., LiveServer]


def test_labels_are_given_kept_and_filtered_by(live_server: Start) -> None:
    """`create(labels=)` stores them; `list(label=)` and `iter_jobs(label=)` find
    exactly the jobs carrying every label asked for."""
    server = live_server(workers=False)
    with Client(server.url, server.token("alice")) as client:
        first = client.create("synthetic", {"rows": 10}, labels={"doc": "1", "stage": "final"})
        second = client.create("synthetic", {"rows": 10}, labels={"doc": "1"})
        client.create("synthetic", {"rows": 10}, labels={"doc": "2"})
        assert client.get(first.id).labels == {"doc": "1", "stage": "final"}
        assert [j.id for j in client.list(label={"doc": "1"}).items] == [second.id, first.id]
        both = {"doc": "1", "stage": "final"}
        assert [j.id for j in client.iter_jobs(label=both, page_size=1)] == [first.id]
        assert list(client.iter_jobs(label={"doc": "3"})) == []


def test_history_pages_and_iterates(live_server: Start) -> None:
    """A cancelled job's history: `history` one page at a time, `iter_history` all of
    it, the cancel named after the token that asked."""
    server = live_server(workers=False)
    with Client(server.url, server.token("alice")) as client:
        job = client.create("synthetic", {"rows": 10})
        client.cancel(job.id)
        page = client.history(job.id, limit=1)
        assert [e.type for e in page.items] == ["created"] and page.next_cursor is not None
        rest = client.history(job.id, after=page.next_cursor)
        assert [e.type for e in rest.items] == ["cancelled"] and rest.next_cursor is None
        entries = list(client.iter_history(job.id, page_size=1))
    assert [e.type for e in entries] == ["created", "cancelled"]
    assert all(e.actor.startswith("alice/") for e in entries)
    assert entries[1].status == "cancelled" and entries[1].at is not None


def test_the_async_client_has_labels_and_history(live_server: Start) -> None:
    """The async twin: labels on create and list, history through `iter_history`."""
    server = live_server(workers=False)

    async def scenario() -> tuple[list[str], list[HistoryEntry], dict[str, str]]:
        async with AsyncClient(server.url, server.token("alice")) as client:
            job = await client.create("synthetic", {"rows": 10}, labels={"k": "v"})
            await client.create("synthetic", {"rows": 10})
            found = [j.id async for j in client.iter_jobs(label={"k": "v"})]
            assert [j.id for j in (await client.list(label={"k": "v"})).items] == found
            await client.cancel(job.id)
            entries = [e async for e in client.iter_history(job.id)]
            return found, entries, (await client.get(job.id)).labels

    found, entries, labels = asyncio.run(scenario())
    assert len(found) == 1 and labels == {"k": "v"}
    assert [e.type for e in entries] == ["created", "cancelled"]
