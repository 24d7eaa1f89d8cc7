"""SSRF protection for webhooks: forbidden addresses refused at creation, a name that
rebinds to an internal address refused at delivery, and the connection made to the
checked address with the URL's name kept for Host, SNI and the certificate."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme
from test_api import assert_problem

from conftest import free_port
from exportd.delivery.addresses import AddressGuard, system_resolver
from exportd.delivery.http import HttpSender
from exportd.errors import DeliveryError
from exportd.runtime import Runtime
from support.delivery import (
    SMALL,
    Serve,
    arrivals,
    export,
    register,
    serving,
    settled,
)
from support.receiver import FakeDns, WebhookReceiver


@pytest.fixture
def serve(make_runtime: Callable[..., Runtime]) -> Iterator[Serve]:
    yield from serving(make_runtime)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    found = WebhookReceiver(free_port()).start()
    yield found
    found.stop()


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
