"""Webhooks through the durable outbox, against a real HTTP receiver on a loopback port
that verifies every request with the `standardwebhooks` library: endpoints and their
secrets, signed deliveries with a working download link, retries under one id, 410 and
long failure streaks disabling an endpoint, Retry-After, rotation, redelivery, listings,
owner isolation and SSRF refusals at creation and at delivery."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import trustme
from test_api import assert_problem, wait_done

from conftest import free_port, settings_env, wait_for
from exportd.config import Settings
from exportd.delivery.addresses import AddressGuard, system_resolver
from exportd.delivery.http import HttpSender
from exportd.delivery.signing import new_secret
from exportd.errors import DeliveryError
from exportd.jobs import NewJob, utcnow
from exportd.runtime import Runtime
from exportd.store import SqlJobStore, open_store
from exportd.store.schema import outbox, webhooks
from support.delivery import (
    FAST,
    Serve,
    arrivals,
    register,
    serving,
    settled,
    shift_failing_since,
)
from support.receiver import FakeDns, WebhookReceiver

SMALL = {"exporter": "synthetic", "params": {"rows": 20}, "filename": "orders.csv"}


@pytest.fixture
def serve(make_runtime: Callable[..., Runtime]) -> Iterator[Serve]:
    yield from serving(make_runtime)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver(free_port()).start()
    yield found
    found.stop()


def export(client: httpx.Client, body: dict[str, Any] = SMALL) -> dict[str, Any]:
    created = client.post("/v1/exports", json=body)
    assert created.status_code == 202, created.text
    return wait_done(client, created.json()["id"])


def message_row(store: SqlJobStore, message_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(outbox).where(outbox.c.id == message_id)).one()


def test_a_completed_export_is_delivered_signed_with_a_link_that_downloads(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """One completed export: exactly one request, verified by standardwebhooks, whose
    `webhook-id` is the outbox row's id and whose download link fetches the file."""
    server = serve()
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url(), events=["export.completed"])
    assert hook["secret"].startswith("whsec_")
    assert 24 <= len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) <= 32
    job = export(client)
    (request,) = arrivals(receiver, 1)
    payload = request.verify(hook["secret"])
    assert payload["type"] == "export.completed"
    assert payload["data"]["id"] == job["id"] and payload["data"]["rows"] == 20
    link = payload["data"]["download"]
    assert link["url"].startswith(f"{server.url}/v1/files/")
    assert link["expires_at"] > utcnow().isoformat()
    file = httpx.get(link["url"])
    assert file.status_code == 200
    assert hashlib.sha256(file.content).hexdigest() == job["artifacts"][0]["sha256"]
    row = message_row(server.runtime.store, request.id)
    assert (row.status, row.attempts, row.webhook_id) == ("delivered", 1, hook["id"])
    assert len(receiver.snapshot()) == 1


def test_endpoints_belong_to_their_owner_and_admins_see_all(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """Another owner's webhook is a 404 on every route; lists never show secrets; admins
    list everyone's; bad events and URLs are 422 with stable codes."""
    server = serve(workers=False)
    ann = server.client(server.token("ann"))
    bob = server.client(server.token("bob"))
    admin = server.client(server.admin_token)
    hook = register(ann, receiver.url(), description="orders")
    assert hook["events"] == [] and hook["enabled"] is True
    assert ann.get(f"/v1/webhooks/{hook['id']}").json()["description"] == "orders"
    for method, path in (
        ("GET", f"/v1/webhooks/{hook['id']}"),
        ("PATCH", f"/v1/webhooks/{hook['id']}"),
        ("DELETE", f"/v1/webhooks/{hook['id']}"),
        ("POST", f"/v1/webhooks/{hook['id']}/rotate-secret"),
        ("GET", f"/v1/webhooks/{hook['id']}/deliveries"),
    ):
        assert_problem(
            bob.request(method, path, json={} if method == "PATCH" else None), 404, "not_found"
        )
    assert bob.get("/v1/webhooks").json()["items"] == []
    listed = admin.get("/v1/webhooks").json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert all("secret" not in h for h in [*listed, *ann.get("/v1/webhooks").json()["items"]])
    changed = ann.patch(f"/v1/webhooks/{hook['id']}", json={"events": ["export.failed"]})
    assert changed.json()["events"] == ["export.failed"]
    bad_event = ann.post("/v1/webhooks", json={"url": receiver.url(), "events": ["export.done"]})
    assert_problem(bad_event, 422, "unknown_event")
    assert_problem(
        ann.post("/v1/webhooks", json={"url": "ftp://x.test/"}), 422, "invalid_webhook_url"
    )
    assert_problem(
        ann.post("/v1/webhooks", json={"url": "https://u:p@x.test/"}), 422, "invalid_webhook_url"
    )
    assert ann.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert_problem(ann.get(f"/v1/webhooks/{hook['id']}"), 404, "not_found")


def test_creation_refuses_urls_that_resolve_to_forbidden_addresses(serve: Serve) -> None:
    """With SSRF protection on, loopback, private, link-local, metadata, CGNAT and IPv6
    loopback or mapped forms are refused at creation, for endpoints and for a job's
    notify URL; a name with a mixed DNS answer is refused whole."""
    server = serve(workers=False, webhook_allow_private=False)
    dns = FakeDns({"mixed.example.test": ["93.184.215.14", "10.0.0.1"]})
    server.runtime.guard.resolver = dns
    client = server.client(server.token("ann"))
    for url in (
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://0.0.0.0/hook",
        "http://mixed.example.test/hook",
    ):
        body = assert_problem(
            client.post("/v1/webhooks", json={"url": url}), 422, "webhook_url_forbidden"
        )
        assert "resolves to" in body["detail"]
    server.runtime.guard.resolver = system_resolver
    assert_problem(
        client.post("/v1/webhooks", json={"url": "http://localhost:8080/hook"}),
        422,
        "webhook_url_forbidden",
    )
    job = client.post(
        "/v1/exports", json={**SMALL, "notify": {"webhook_url": "http://127.0.0.1/x"}}
    )
    assert_problem(job, 422, "webhook_url_forbidden")
    server.runtime.guard.resolver = dns
    assert_problem(
        client.post("/v1/webhooks", json={"url": "http://nowhere.example.test/"}),
        422,
        "webhook_url_unresolvable",
    )
    assert client.get("/v1/webhooks").json()["items"] == []


def test_a_receiver_that_was_down_gets_the_same_message_id_once_it_is_up(
    serve: Serve,
) -> None:
    """Connection refused, then a receiver on that port: the same `webhook-id` arrives,
    and the deliveries listing shows the failed attempts before the success."""
    server = serve(webhook_retry_schedule=[0.2, 0.5, 5.0, 5.0])
    client = server.client(server.token("ann"))
    receiver = WebhookReceiver(free_port())  # not listening yet
    hook = register(client, receiver.url())
    job = export(client)
    store = server.runtime.store

    def failed_twice() -> Any:
        page = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        return page[0] if page and page[0]["attempt_count"] >= 2 else None

    first = wait_for(failed_twice, what="two failed attempts")
    receiver.start()
    try:
        (request,) = arrivals(receiver, 1)
    finally:
        receiver.stop()
    assert request.id == first["id"]
    assert request.verify(hook["secret"])["data"]["id"] == job["id"]
    done = settled(client, first["id"], "delivered")
    codes = [(a["code"], a["status_code"]) for a in done["attempts"]]
    assert codes[-1] == (None, 204)
    assert {code for code, _ in codes[:-1]} == {"connect_error"}
    assert message_row(store, first["id"]).attempts == len(codes) >= 3


def test_410_disables_the_endpoint_until_it_is_enabled_again(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """A 410 disables the endpoint (reason kept), writes no more messages for it and
    refuses redelivery; enabling it again lets the same message through."""
    server = serve()
    client = server.client(server.token("ann"))
    receiver.answers.append((410, {}))
    hook = register(client, receiver.url())
    export(client)
    (request,) = arrivals(receiver, 1)
    failed = settled(client, request.id, "failed")
    assert failed["attempts"][0]["status_code"] == 410
    shown = client.get(f"/v1/webhooks/{hook['id']}").json()
    assert shown["enabled"] is False and "410" in shown["disabled_reason"]
    later = export(client)
    store = server.runtime.store
    page, _ = store.list_messages("ann", job_id=later["id"])
    assert page == []
    assert_problem(
        client.post(f"/v1/webhooks/deliveries/{request.id}/redeliver"), 409, "cannot_redeliver"
    )
    enabled = client.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True}).json()
    assert enabled["enabled"] is True and enabled["disabled_reason"] is None
    assert client.post(f"/v1/webhooks/deliveries/{request.id}/redeliver").status_code == 202
    again = arrivals(receiver, 2)[1]
    assert again.id == request.id and again.verifies(hook["secret"])
    assert settled(client, request.id, "delivered")["attempt_count"] == 1


def test_an_endpoint_failing_for_five_days_is_disabled(serve: Serve) -> None:
    """Failing since six days: the next failure disables the endpoint; failing since
    four days: it stays enabled (and retries); a success ends the streak."""
    server = serve(webhook_retry_schedule=[30.0])
    client = server.client(server.token("ann"))
    failing = WebhookReceiver(free_port(), answers=[(500, {})] * 5).start()
    try:
        old = register(client, failing.url("/old"))
        young = register(client, failing.url("/young"))
        store = server.runtime.store
        shift_failing_since(store, old["id"], 6)
        shift_failing_since(store, young["id"], 4)
        export(client)
        arrivals(failing, 2)
        wait_for(
            lambda: client.get(f"/v1/webhooks/{old['id']}").json()["enabled"] is False,
            what="the old endpoint to be disabled",
        )
    finally:
        failing.stop()
    reason = client.get(f"/v1/webhooks/{old['id']}").json()["disabled_reason"]
    assert "failed since" in reason
    kept = client.get(f"/v1/webhooks/{young['id']}").json()
    assert kept["enabled"] is True and kept["failing_since"] is not None
    (pending,) = client.get(f"/v1/webhooks/{young['id']}/deliveries").json()["items"]
    assert pending["status"] == "pending" and pending["next_attempt_at"] is not None


def test_retry_after_is_honoured_in_seconds_and_as_an_http_date(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """A 503 with `Retry-After: 2` and a 429 with an HTTP date put the next try at
    least that far out, though the schedule says 0.2 s; then the message is delivered."""
    server = serve(webhook_retry_schedule=[0.2, 0.2, 0.2])
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url())
    receiver.answers.append((503, {"Retry-After": "2"}))
    export(client)
    (first,) = arrivals(receiver, 1)
    store = server.runtime.store

    def after(attempts: int) -> Any:
        row = message_row(store, first.id)
        return row if len(row.history) >= attempts and row.lease_until is None else None

    row = wait_for(lambda: after(1), what="the first attempt recorded")
    tried = row.history[0]
    assert tried["status_code"] == 503
    assert row.next_attempt_at >= _at(tried) + timedelta(seconds=2)
    date = utcnow().replace(microsecond=0) + timedelta(seconds=3)
    receiver.answers.append((429, {"Retry-After": format_datetime(date, usegmt=True)}))
    arrivals(receiver, 2)
    row = wait_for(lambda: after(2), what="the second attempt recorded")
    assert row.history[1]["status_code"] == 429
    assert row.next_attempt_at >= date
    assert settled(client, first.id, "delivered")["attempt_count"] == 3
    assert all(r.id == first.id and r.verifies(hook["secret"]) for r in arrivals(receiver, 3))


def _at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["at"])


def test_a_rotated_secret_signs_with_both_secrets_for_the_grace_period(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """After a rotation both secrets verify (two `v1,` signatures); once the grace
    period is over only the new one does."""
    server = serve()
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url())
    old = hook["secret"]
    export(client)
    assert arrivals(receiver, 1)[0].verifies(old)
    rotated = client.post(f"/v1/webhooks/{hook['id']}/rotate-secret").json()
    new = rotated["secret"]
    assert new != old and rotated["previous_secret_expires_at"] > utcnow().isoformat()
    export(client)
    during = arrivals(receiver, 2)[1]
    assert during.verifies(old) and during.verifies(new)
    assert during.headers["webhook-signature"].count("v1,") == 2
    with server.runtime.store.engine.begin() as conn:
        conn.execute(
            webhooks.update()
            .where(webhooks.c.id == hook["id"])
            .values(previous_secret_until=utcnow() - timedelta(seconds=1))
        )
    export(client)
    after = arrivals(receiver, 3)[2]
    assert after.verifies(new) and not after.verifies(old)
    assert after.headers["webhook-signature"].count("v1,") == 1


def test_delivery_connects_to_the_checked_address_and_refuses_a_rebound_name(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """A name that resolved to a public address at creation but resolves to loopback,
    private, metadata or IPv6 loopback at delivery is refused then (nothing reaches the
    receiver, no retry); with private addresses allowed, the connection goes to the
    address the guard resolved, keeping the URL's Host header."""
    server = serve(webhook_allow_private=False)
    dns = FakeDns({"hooks.example.test": ["93.184.215.14"]})
    server.runtime.guard.resolver = dns
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url(host="hooks.example.test"))
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    export(client)
    (first,) = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
    refused = settled(client, first["id"], "failed")
    assert refused["attempts"][0]["code"] == "webhook_url_forbidden"
    for answer in (["10.0.0.7"], ["169.254.169.254"], ["::1"], ["::ffff:127.0.0.1"]):
        dns.answers["hooks.example.test"] = answer
        assert client.post(f"/v1/webhooks/deliveries/{first['id']}/redeliver").status_code == 202
        again = settled(client, first["id"], "failed")
        assert again["attempts"][-1]["code"] == "webhook_url_forbidden", answer
        assert answer[0] in again["attempts"][-1]["error"]
    assert receiver.snapshot() == []
    server.runtime.guard.allow_private = True
    dns.answers["hooks.example.test"] = ["127.0.0.1"]
    looked_up = len(dns.lookups)
    client.post(f"/v1/webhooks/deliveries/{first['id']}/redeliver")
    (request,) = arrivals(receiver, 1)
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert request.verifies(hook["secret"])
    assert dns.lookups[looked_up:] == ["hooks.example.test"]


def test_redelivery_and_the_deliveries_listing(serve: Serve, receiver: WebhookReceiver) -> None:
    """Deliveries are listed newest first in pages with every attempt; a redelivered
    message arrives again under the same id; another owner cannot see or redeliver it."""
    server = serve()
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url())
    jobs = [export(client) for _ in range(3)]
    arrivals(receiver, 3)
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    first = client.get(path, params={"limit": 2}).json()
    second = client.get(path, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["next_cursor"] is None
    listed = first["items"] + second["items"]
    assert [d["job_id"] for d in listed] == [j["id"] for j in reversed(jobs)]
    for item in listed:
        settled(client, item["id"], "delivered")
    one = settled(client, listed[-1]["id"], "delivered")
    assert one["event_type"] == "export.completed" and one["channel"] == "webhook"
    (attempt,) = one["attempts"]
    assert attempt["status_code"] == 204 and attempt["duration_ms"] >= 0
    by_job = client.get("/v1/webhooks/deliveries", params={"job_id": jobs[0]["id"]}).json()
    assert [d["id"] for d in by_job["items"]] == [one["id"]]
    bob = server.client(server.token("bob"))
    assert_problem(bob.post(f"/v1/webhooks/deliveries/{one['id']}/redeliver"), 404, "not_found")
    assert bob.get("/v1/webhooks/deliveries").json()["items"] == []
    assert client.post(f"/v1/webhooks/deliveries/{one['id']}/redeliver").status_code == 202
    again = arrivals(receiver, 4)[3]
    assert again.id == one["id"] and again.verifies(hook["secret"])
    assert len(settled(client, one["id"], "delivered")["attempts"]) == 2


def test_a_jobs_notify_url_is_signed_with_the_owners_notify_secret(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """A one-off `notify.webhook_url` gets the outcome, signed with the secret from
    `GET /v1/webhooks/notify-secret`, which differs between owners."""
    server = serve()
    client = server.client(server.token("ann"))
    secret = client.get("/v1/webhooks/notify-secret").json()["secret"]
    bob = server.client(server.token("bob")).get("/v1/webhooks/notify-secret").json()["secret"]
    assert secret.startswith("whsec_") and secret != bob
    body = {**SMALL, "params": {"rows": 5}, "notify": {"webhook_url": receiver.url("/once")}}
    job = export(client, body)
    (request,) = arrivals(receiver, 1)
    assert request.path == "/once"
    assert request.verify(secret)["data"]["id"] == job["id"]
    assert not request.verifies(bob)
    assert client.get("/v1/webhooks/notify-secret").json()["secret"] == secret


def test_a_job_deleted_before_delivery_is_sent_without_a_link(
    serve: Serve, receiver: WebhookReceiver
) -> None:
    """The outcome of a completed job that was deleted before its message went out
    still arrives, with `data.download` null."""
    server = serve(delivery_concurrency=0)
    client = server.client(server.token("ann"))
    hook = register(client, receiver.url())
    job = export(client)
    assert client.delete(f"/v1/exports/{job['id']}").status_code == 204
    server.runtime.settings.delivery_concurrency = 2
    server.runtime.start_deliverer()
    (request,) = arrivals(receiver, 1)
    data = request.verify(hook["secret"])["data"]
    assert data["id"] == job["id"] and data["download"] is None


def completed_with_messages(store: SqlJobStore, owner: str, count: int) -> list[str]:
    """Complete `count` jobs of `owner` through the store; returns their job ids."""
    from exportd.jobs import Artifact, Progress

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
    from exportd.store.deliveries import DeliveryAttempt

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


def test_https_connects_to_the_checked_address_with_the_names_sni_and_certificate() -> None:
    """Over TLS the sender connects to the address the guard resolved, yet sends the
    URL's name as SNI and checks the certificate against it: a certificate for the name
    is accepted, one for another name is refused."""
    ca = trustme.CA()
    trusted = ssl.create_default_context()
    ca.configure_trust(trusted)
    dns = FakeDns({"hooks.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    sender = HttpSender(AddressGuard(True, dns), timeout=5, ssl_context=trusted)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("hooks.example.test").configure_cert(served)
    receiver = WebhookReceiver(free_port(), tls=served).start()
    try:
        answer = sender.post(receiver.url(host="hooks.example.test"), {"webhook-id": "m"}, b"{}")
        assert answer.status == 204
        with pytest.raises(DeliveryError) as refused:
            sender.post(receiver.url(host="other.example.test"), {"webhook-id": "n"}, b"{}")
    finally:
        sender.close()
        receiver.stop()
    assert refused.value.code == "connect_error" and "certificate" in refused.value.message
    assert [r.headers["webhook-id"] for r in receiver.snapshot()] == ["m"]
    assert receiver.snapshot()[0].headers["host"] == f"hooks.example.test:{receiver.port}"
    assert receiver.sni[:2] == ["hooks.example.test", "other.example.test"]
    assert dns.lookups == ["hooks.example.test", "other.example.test"]
