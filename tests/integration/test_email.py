"""E-mail through the durable outbox, against a real SMTP server (aiosmtpd) on a
loopback port: the message for each outcome (subject, plain and HTML parts, the link,
the error), retries under one Message-ID, login, permanent refusals, no SMTP
configured, and the owner told when one of its webhooks is disabled."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from test_api import wait_done

from conftest import free_port, wait_for
from exportd.runtime import Runtime
from support.delivery import Serve, register, serving, settled, shift_failing_since
from support.mailbox import Mail, Mailbox
from support.receiver import WebhookReceiver

NAME = "Q3 <draft> & co.csv"


@pytest.fixture
def serve(make_runtime: Callable[..., Runtime]) -> Iterator[Serve]:
    yield from serving(make_runtime)


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port()).start()
    yield box
    box.stop()


def mails(box: Mailbox, count: int) -> list[Mail]:
    found: list[Mail] = wait_for(
        lambda: box.snapshot() if len(box.snapshot()) >= count else None, what=f"{count} mails"
    )
    return found


def mailed_export(client: httpx.Client, to: list[str], **body: Any) -> dict[str, Any]:
    request = {"exporter": "synthetic", "params": {"rows": 20}, "notify": {"email": to}, **body}
    created = client.post("/v1/exports", json=request)
    assert created.status_code == 202, created.text
    return wait_done(client, created.json()["id"])


def test_a_completed_export_is_mailed_with_both_parts_and_a_working_link(
    serve: Serve, mailbox: Mailbox
) -> None:
    """Subject with the file name and outcome; plain and HTML parts with rows, size and
    the link (escaped in HTML); the link downloads the file; one mail per address."""
    server = serve(smtp_url=f"smtp://127.0.0.1:{mailbox.port}", mail_from="exports@example.test")
    client = server.client(server.token("ann"))
    job = mailed_export(client, ["a@example.test", "b@example.test"], filename=NAME)
    got = mails(mailbox, 2)
    assert sorted(r for mail in got for r in mail.recipients) == [
        "a@example.test",
        "b@example.test",
    ]
    mail = next(m for m in got if m.recipients == ["a@example.test"])
    assert mail.message["Subject"] == f'Your export "{NAME}" is ready'
    assert mail.message["From"] == "exports@example.test"
    assert mail.message["Message-ID"].startswith("<msg_")
    text, html = mail.part("plain"), mail.part("html")
    assert f"Export: {NAME}" in text and "Rows: 20" in text and "Size: " in text
    assert "Q3 &lt;draft&gt; &amp; co.csv" in html and "<draft>" not in html
    link = next(line for line in text.splitlines() if line.startswith("Download: "))
    url = link.removeprefix("Download: ")
    assert url.startswith(f"{server.url}/v1/files/") and "The link expires at" in text
    assert f'href="{url}"' in html
    file = httpx.get(url)
    assert hashlib.sha256(file.content).hexdigest() == job["artifacts"][0]["sha256"]


def test_a_failed_export_mail_names_the_error(serve: Serve, mailbox: Mailbox) -> None:
    """A permanently failed export is mailed with its error code and message, no link."""
    server = serve(smtp_url=f"smtp://127.0.0.1:{mailbox.port}")
    client = server.client(server.token("ann"))
    job = mailed_export(client, ["ops@example.test"], exporter="flaky", params={"permanent": True})
    assert job["status"] == "failed"
    (mail,) = mails(mailbox, 1)
    assert mail.message["Subject"] == 'Your export "flaky" failed'
    text = mail.part("plain")
    assert f"Error: {job['error']['code']}: " in text and "Download" not in text


def test_without_smtp_mail_fails_at_once(serve: Serve) -> None:
    """With no `EXPORTD_SMTP_URL`, an e-mail message fails on its first attempt with
    `smtp_not_configured` instead of being retried."""
    server = serve()
    client = server.client(server.token("ann"))
    job = mailed_export(client, ["ops@example.test"])
    (item,) = client.get("/v1/webhooks/deliveries", params={"job_id": job["id"]}).json()["items"]
    done = settled(client, item["id"], "failed")
    assert done["channel"] == "email" and done["attempt_count"] == 1
    assert [a["code"] for a in done["attempts"]] == ["smtp_not_configured"]


def test_a_deferring_server_is_retried_under_one_message_id_with_the_login(
    serve: Serve,
) -> None:
    """A 451 is retried and then accepted (one mail, one Message-ID, the URL's
    percent-encoded credentials used); a 550 fails the message at once."""
    box = Mailbox(free_port(), login=("mailer", "s3cr%t"), refusals=["451 4.3.0 later"]).start()
    try:
        server = serve(smtp_url=f"smtp://mailer:s3cr%25t@127.0.0.1:{box.port}")
        client = server.client(server.token("ann"))
        job = mailed_export(client, ["ops@example.test"])
        (mail,) = mails(box, 1)
        (item,) = client.get("/v1/webhooks/deliveries", params={"job_id": job["id"]}).json()[
            "items"
        ]
        done = settled(client, item["id"], "delivered")
        assert [a["code"] for a in done["attempts"]] == ["smtp_rejected", None]
        assert mail.message["Message-ID"] == f"<{item['id']}@exportd>"
        assert box.logins == ["mailer", "mailer"]
        box.refusals.append("550 5.7.1 not here")
        other = mailed_export(client, ["nobody@example.test"])
        (refused,) = client.get("/v1/webhooks/deliveries", params={"job_id": other["id"]}).json()[
            "items"
        ]
        failed = settled(client, refused["id"], "failed")
        assert failed["attempt_count"] == 1 and "550" in failed["attempts"][0]["error"]
    finally:
        box.stop()
    assert len(box.snapshot()) == 1


def test_an_endpoint_disabled_for_failing_five_days_is_mailed_to_its_owner(
    serve: Serve, mailbox: Mailbox
) -> None:
    """The owner named in `EXPORTD_OWNER_EMAILS` gets a mail saying which webhook was
    disabled and why; owners without an address get none."""
    server = serve(
        smtp_url=f"smtp://127.0.0.1:{mailbox.port}",
        owner_emails={"ann": "ann@example.test"},
        webhook_retry_schedule=[30.0],
    )
    failing = WebhookReceiver(free_port(), answers=[(500, {})] * 4).start()
    try:
        ann = server.client(server.token("ann"))
        bob = server.client(server.token("bob"))
        hooks = [register(client, failing.url()) for client in (ann, bob)]
        for hook in hooks:
            shift_failing_since(server.runtime.store, hook["id"], 6)
        for client in (ann, bob):
            mailed_export(client, [])
        for client, hook in zip((ann, bob), hooks, strict=True):
            wait_for(
                lambda c=client, h=hook: (
                    c.get(f"/v1/webhooks/{h['id']}").json()["enabled"] is False
                ),
                what="the endpoint to be disabled",
            )
    finally:
        failing.stop()
    (mail,) = mails(mailbox, 1)
    assert mail.recipients == ["ann@example.test"]
    assert mail.message["Subject"] == f"Your exportd webhook was disabled: {failing.url()}"
    text = mail.part("plain")
    assert f"Webhook: {failing.url()}" in text and "failed since" in text
