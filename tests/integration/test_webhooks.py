"""Webhooks through the durable outbox, against a real HTTP receiver on a loopback port
that verifies every request with the `standardwebhooks` library: endpoints and their
secrets, signed deliveries with a working download link, retries under one id, 410 and
long failure streaks disabling an endpoint, Retry-After, rotation, redelivery, listings
and owner isolation."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from test_api import assert_problem

from conftest import free_port, wait_for
from exportd.jobs import utcnow
from exportd.runtime import Runtime
from exportd.store.schema import webhooks
from support.delivery import (
    SMALL,
    Serve,
    arrivals,
    export,
    message_row,
    register,
    serving,
    settled,
    shift_failing_since,
)
from support.receiver import WebhookReceiver


@pytest.fixture
def serve(make_runtime: Callable[..., Runtime]) -> Iterator[Serve]:
    yield from serving(make_runtime)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver(free_port()).start()
    yield found
    found.stop()


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
        return page[0] if page and len(page[0]["attempts"]) >= 2 else None

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
