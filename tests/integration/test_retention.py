"""Files of exports with a time to live are removed when it runs out; the job stays."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from test_api import assert_problem, create, wait_done

from conftest import LiveServer
from exportd.jobs import utcnow
from exportd.store.retention import expire


def test_expired_files_are_removed_and_downloads_are_gone(
    live_server: Callable[..., LiveServer],
) -> None:
    """Past finished_at + ttl_seconds the files and their rows go, an `expired` event is
    recorded, downloads answer 410, and exports without a ttl are kept."""
    server = live_server()
    client = server.client(server.token("alice"))
    short = wait_done(client, create(client, {"exporter": "synthetic", "ttl_seconds": 60})["id"])
    kept = wait_done(client, create(client)["id"])
    store, storage = server.runtime.store, server.runtime.storage
    assert expire(store, storage) == 0  # not yet
    assert expire(store, storage, now=utcnow() + timedelta(seconds=61)) == 1
    assert [a["name"] for a in client.get(f"/v1/exports/{short['id']}").json()["artifacts"]] == []
    assert_problem(client.get(f"/v1/exports/{short['id']}/download"), 410, "expired")
    assert client.get(f"/v1/exports/{kept['id']}/download").status_code == 307
    assert list(storage.keys()) == [store.get(kept["id"]).artifacts[0].storage_key]
    types = [e.type for e in store.events_after(0, job_id=short["id"])]
    assert types[-1] == "expired"
