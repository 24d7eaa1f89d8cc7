"""Helpers for the delivery tests: a server that delivers fast, and waiting for what
its deliverer did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from test_api import wait_done

from conftest import LiveServer, wait_for
from exportd.jobs import utcnow
from exportd.runtime import Runtime
from exportd.store import SqlJobStore
from exportd.store.schema import outbox, webhooks
from support.receiver import Received, WebhookReceiver

Serve = Callable[..., LiveServer]

FAST = {
    "webhook_allow_private": True,
    "webhook_retry_schedule": [0.2, 0.5, 1.0],
    "delivery_timeout_seconds": 3.0,
    "delivery_lease_seconds": 10.0,
}
"""A test server's delivery settings: loopback receivers allowed, retries in a second."""

SMALL = {"exporter": "synthetic", "params": {"rows": 20}, "filename": "orders.csv"}


def serving(make_runtime: Callable[..., Runtime]) -> Iterator[Serve]:
    """For a `serve` fixture: start `exportd serve` (API, worker slots unless
    `workers=False`, deliverer) with `FAST` settings and links that point at itself."""
    started: list[LiveServer] = []

    def start(workers: bool = True, **settings: Any) -> LiveServer:
        server = LiveServer(make_runtime(**{**FAST, **settings}), workers=workers)
        server.runtime.settings.public_url = server.url
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


def arrivals(receiver: WebhookReceiver, count: int, timeout: float = 30) -> list[Received]:
    """Wait until `receiver` has at least `count` requests; returns them."""

    def enough() -> list[Received] | None:
        got = receiver.snapshot()
        return got if len(got) >= count else None

    found: list[Received] = wait_for(enough, timeout, what=f"{count} webhook requests")
    return found


def register(client: httpx.Client, url: str, **body: Any) -> dict[str, Any]:
    created = client.post("/v1/webhooks", json={"url": url, **body})
    assert created.status_code == 201, created.text
    found: dict[str, Any] = created.json()
    return found


def settled(client: httpx.Client, message_id: str, *statuses: str) -> dict[str, Any]:
    """Wait for the delivery `message_id` to reach one of `statuses`."""

    def reached() -> dict[str, Any] | None:
        page = client.get("/v1/webhooks/deliveries", params={"limit": 200}).json()["items"]
        mine = [d for d in page if d["id"] == message_id]
        return mine[0] if mine and mine[0]["status"] in statuses else None

    found: dict[str, Any] = wait_for(reached, 30, what=f"delivery {message_id} {statuses}")
    return found


def shift_failing_since(store: SqlJobStore, webhook_id: str, days: float) -> None:
    """Pretend the endpoint's deliveries have been failing for `days`."""
    with store.engine.begin() as conn:
        conn.execute(
            webhooks.update()
            .where(webhooks.c.id == webhook_id)
            .values(failing_since=utcnow() - timedelta(days=days))
        )


def export(client: httpx.Client, body: dict[str, Any] = SMALL) -> dict[str, Any]:
    created = client.post("/v1/exports", json=body)
    assert created.status_code == 202, created.text
    return wait_done(client, created.json()["id"])


def message_row(store: SqlJobStore, message_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.id == message_id)).one()
