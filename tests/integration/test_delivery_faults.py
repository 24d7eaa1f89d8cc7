"""Delivery under faults and concurrency: leases that keep deliverers apart and run
out when one dies, several deliverers sending each message once, a worker process
killed mid-send, and what a deliverer loads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from conftest import free_port, settings_env, wait_for
from exportd.config import Settings
from exportd.delivery.signing import new_secret
from exportd.jobs import Artifact, NewJob, Progress, utcnow
from exportd.runtime import Runtime
from exportd.store import SqlJobStore, open_store
from exportd.store.deliveries import DeliveryAttempt
from exportd.store.schema import outbox
from support.delivery import FAST, arrivals, message_row
from support.receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver(free_port()).start()
    yield found
    found.stop()


def completed_with_messages(store: SqlJobStore, owner: str, count: int) -> list[str]:
    """Complete `count` jobs of `owner` through the store; returns their job ids."""
    done = []
    for _ in range(count):
        store.enqueue(NewJob(owner=owner, exporter="synthetic", params={"rows": 1}))
        claim = store.claim("w", lease_seconds=60, owner_cap=100)
        assert claim is not None
        key = f"{owner}/{claim.job.id}/{claim.token}/f.csv"
        art = Artifact(claim.job.id, "f.csv", key, 1, "a" * 64, "text/csv")
        store.complete(claim, [art], Progress(1, 1))
        done.append(claim.job.id)
    return done


def test_a_claimed_message_is_exclusive_until_its_lease_runs_out(store: SqlJobStore) -> None:
    """A second deliverer cannot claim a held message; once the lease has run out it
    takes it back (the lost attempt recorded), and the first holder's late write is
    refused by the fence."""
    hook = store.create_webhook("ann", "https://example.test/h", [], None, new_secret())
    completed_with_messages(store, "ann", 1)
    (held,) = store.claim_messages("a", 10, lease_seconds=60, max_attempts=8)
    assert (held.webhook_id, held.attempts, held.lease_holder) == (hook.id, 1, "a")
    assert store.claim_messages("b", 10, lease_seconds=60, max_attempts=8) == []
    with store.engine.begin() as conn:
        conn.execute(outbox.update().values(lease_until=utcnow() - timedelta(seconds=1)))
    (taken,) = store.claim_messages("b", 10, lease_seconds=60, max_attempts=8)
    assert (taken.id, taken.attempts, taken.lease_holder) == (held.id, 2, "b")
    assert [h["code"] for h in taken.history] == ["deliverer_lost"]
    late = DeliveryAttempt(1, utcnow(), 5, 204)
    assert store.message_delivered(held, late) is False
    assert store.message_delivered(taken, DeliveryAttempt(2, utcnow(), 5, 204)) is True
    assert store.get_message(held.id, "ann").status == "delivered"  # type: ignore[union-attr]
    assert store.get_message(held.id, "bob") is None


def test_disabling_an_endpoint_fails_its_pending_messages_only(store: SqlJobStore) -> None:
    """Disabling one endpoint fails its pending messages, in flight or not, and leaves
    other endpoints' messages pending; a message of a deleted endpoint fails too."""
    gone = store.create_webhook("ann", "https://example.test/gone", [], None, new_secret())
    kept = store.create_webhook("ann", "https://example.test/kept", [], None, new_secret())
    completed_with_messages(store, "ann", 2)
    store.claim_messages("a", 1, lease_seconds=60, max_attempts=8)
    assert store.disable_webhook(gone.id, "the endpoint answered 410 Gone") is True
    assert store.disable_webhook(gone.id, "again") is False
    states = {
        (m.webhook_id, m.status, (m.last_error or "").split(":")[0])
        for m in store.list_messages("ann")[0]
    }
    assert states == {(gone.id, "failed", "webhook_disabled"), (kept.id, "pending", "")}
    assert store.delete_webhook(kept.id, "bob") is False
    assert store.delete_webhook(kept.id, "ann") is True
    assert {m.status for m in store.list_messages("ann")[0]} == {"failed"}


def test_several_deliverers_send_each_message_exactly_once(
    make_runtime: Callable[..., Runtime], receiver: WebhookReceiver
) -> None:
    """Four deliverers, each with its own connections to the one store, drain 40
    messages: each arrives once, on its first attempt."""
    runtimes = [make_runtime(**FAST, delivery_concurrency=4) for _ in range(4)]
    store = runtimes[0].store
    hook = store.create_webhook("ann", receiver.url(), [], None, new_secret())
    jobs = completed_with_messages(store, "ann", 40)
    for runtime in runtimes:
        runtime.start_deliverer()
    got = arrivals(receiver, 40)
    wait_for(
        lambda: len(store.list_messages("ann", status="delivered", limit=100)[0]) == 40,
        what="40 delivered messages",
    )
    assert sorted(r.id for r in got) == sorted({r.id for r in got})
    assert sorted(r.verify(hook.secret)["data"]["id"] for r in got) == sorted(jobs)
    assert {m.attempts for m in store.list_messages("ann", limit=100)[0]} == {1}
    assert len(receiver.snapshot()) == 40


@pytest.mark.slow
def test_a_message_held_by_a_killed_worker_is_delivered_by_the_next_one(
    settings_for: Callable[..., Settings],
    spawn_worker: Callable[..., subprocess.Popen[bytes]],
    receiver: WebhookReceiver,
) -> None:
    """`exportd worker` completes a job and starts sending its webhook; it is killed
    (SIGKILL) while the receiver holds the request. Once the lease runs out the next
    worker sends the same message, same `webhook-id`, and it is delivered."""
    settings = settings_for(
        **{**FAST, "delivery_timeout_seconds": 2.0, "delivery_lease_seconds": 7.0}
    )
    store = open_store(settings.resolved_database_url())
    store.migrate()
    receiver.hold = threading.Event()
    hook = store.create_webhook("ann", receiver.url(), [], None, new_secret())
    store.enqueue(NewJob(owner="ann", exporter="synthetic", params={"rows": 10}))
    victim = spawn_worker(settings)
    (held,) = arrivals(receiver, 1, timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    receiver.hold.set()
    row = message_row(store, held.id)
    assert (row.status, row.attempts) == ("pending", 1) and row.lease_holder is not None
    spawn_worker(settings)
    wait_for(lambda: message_row(store, held.id).status == "delivered", 60, what="delivery")
    got = receiver.snapshot()
    assert [r.id for r in got] == [held.id, held.id]
    assert all(r.verifies(hook.secret) for r in got)
    row = message_row(store, held.id)
    assert row.attempts == 2
    assert [(h["code"], h["status_code"]) for h in row.history] == [
        ("deliverer_lost", None),
        (None, 204),
    ]
    store.dispose()


DELIVERER = """
import json, sys
from exportd.config import Settings
from exportd.runtime import Runtime

runtime = Runtime.open(Settings())
runtime.start_deliverer()
runtime.close(grace=0)
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.slow
def test_a_deliverer_with_nothing_to_send_loads_no_http_client(
    settings_for: Callable[..., Settings],
) -> None:
    """A worker process's deliverer imports httpcore only when a webhook goes out."""
    env = settings_env(settings_for())
    done = subprocess.run(
        [sys.executable, "-c", DELIVERER], env=env, capture_output=True, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "exportd.delivery.deliverer" in loaded
    assert not loaded & {"httpcore", "httpx", "h11"}


def test_a_deliverer_wakes_when_another_process_writes_a_message(
    make_runtime: Callable[..., Runtime], receiver: WebhookReceiver
) -> None:
    """A deliverer polling only once a minute still sends at once a message that
    another store connection wrote: PostgreSQL LISTEN, or SQLite's change counter."""
    runtime = make_runtime(**FAST, poll_interval=60.0)
    other = open_store(runtime.settings.resolved_database_url())
    try:
        hook = other.create_webhook("ann", receiver.url(), [], None, new_secret())
        runtime.start_deliverer()
        completed_with_messages(other, "ann", 1)
        (request,) = arrivals(receiver, 1, timeout=20)
    finally:
        other.dispose()
    assert request.verifies(hook.secret)
