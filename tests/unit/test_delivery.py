"""The delivery parts without I/O: the retry schedule and Retry-After, Standard Webhooks
signatures (checked with the `standardwebhooks` library), address classification and
URL checks, SMTP URLs, and what an e-mail says."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from standardwebhooks.webhooks import Webhook

from exportd.config import Settings
from exportd.delivery.addresses import AddressGuard, forbidden_reason, parse_url
from exportd.delivery.content import facts
from exportd.delivery.schedule import DEFAULT_DELAYS, RetrySchedule, parse_retry_after
from exportd.delivery.signing import new_secret, notify_secret, signed_headers
from exportd.delivery.smtp import parse_smtp_url
from exportd.errors import ConfigurationError, TargetRefused


def test_the_default_schedule_retries_seven_times_with_bounded_jitter() -> None:
    """5 s … 10 h, each within ±15 %, then no more tries after the eighth attempt."""
    schedule = RetrySchedule()
    rand = random.Random(7)
    assert schedule.max_attempts == 8
    for attempts, planned in enumerate(DEFAULT_DELAYS, start=1):
        for _ in range(50):
            delay = schedule.delay(attempts, rand=rand)
            assert delay is not None and planned * 0.85 <= delay <= planned * 1.15
    assert schedule.delay(8) is None and schedule.delay(0) is None


def test_retry_after_wins_only_when_it_asks_for_longer() -> None:
    """A longer Retry-After replaces the planned delay; a shorter one does not."""
    schedule = RetrySchedule((10.0,), jitter=0.0)
    assert schedule.delay(1, retry_after=60) == 60
    assert schedule.delay(1, retry_after=1) == 10


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """Seconds, an HTTP date (relative to now, never negative), and junk as None."""
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after(format_datetime(now + timedelta(seconds=90), usegmt=True), now) == 90
    assert parse_retry_after(format_datetime(now - timedelta(hours=1), usegmt=True), now) == 0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None


def test_signatures_verify_with_the_standardwebhooks_library() -> None:
    """Each secret's signature verifies on its own; a tampered body verifies with none."""
    first, second = new_secret(), new_secret()
    body = b'{"type":"export.completed","data":{"id":"x"}}'
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers([first, second], "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == str(now)
    for secret in (first, second):
        assert Webhook(secret).verify(body, headers)["data"]["id"] == "x"
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(first).verify(body.replace(b"x", b"y"), headers)


def test_notify_secrets_are_stable_per_owner_and_key() -> None:
    """The same key and owner give the same secret; another owner or key another one."""
    assert notify_secret(b"k", "ann") == notify_secret(b"k", "ann")
    assert (
        len({notify_secret(b"k", "ann"), notify_secret(b"k", "bob"), notify_secret(b"j", "ann")})
        == 3
    )


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.10.10",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "ff02::1",
    ],
)
def test_non_public_addresses_are_forbidden(address: str) -> None:
    """Loopback, private, link-local, CGNAT, metadata, multicast, unspecified, and IPv6
    forms embedding such IPv4 addresses all have a reason to be refused."""
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:1.1.1.1"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    """Public IPv4 and IPv6 addresses (also IPv4-mapped) pass."""
    assert forbidden_reason(ipaddress.ip_address(address)) is None


def test_url_form_is_checked_before_any_lookup() -> None:
    """Schemes other than http(s), missing hosts, credentials and bad ports are refused
    without resolving; `allow_private` still checks the form."""
    for url in ("ftp://x.test/", "http:///path", "https://u:p@x.test/", "http://x.test:99999/"):
        with pytest.raises(TargetRefused) as refused:
            AddressGuard(allow_private=True).check(url)
        assert refused.value.code == "invalid_webhook_url"
    target = parse_url("https://hooks.example.test/a?b=1")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.test", 443)


def test_smtp_urls() -> None:
    """Plain, STARTTLS and implicit TLS, default ports, percent-decoded credentials;
    other schemes are a configuration error."""
    plain = parse_smtp_url("smtp://mail.test")
    assert (plain.host, plain.port, plain.security, plain.username) == (
        "mail.test",
        25,
        "none",
        None,
    )
    start = parse_smtp_url("smtp://me%40x:p%25w@mail.test?starttls=true")
    assert (start.port, start.security, start.username, start.password) == (
        587,
        "starttls",
        "me@x",
        "p%w",
    )
    assert parse_smtp_url("smtps://mail.test").port == 465
    with pytest.raises(ConfigurationError):
        parse_smtp_url("http://mail.test")


def test_an_email_names_the_export_and_its_outcome() -> None:
    """Subject from the file name or the exporter; the error's code for failures; a
    completed export without a link says the file is gone."""
    data = {"id": "j", "exporter": "orders", "filename": None, "status": "failed", "rows": 3}
    data["error"] = {"code": "boom", "message": "it broke"}
    subject, lines, link = facts({"type": "export.failed", "data": data})
    assert subject == 'Your export "orders" failed' and link is None
    assert ("Error", "boom: it broke") in lines and ("Rows", "3") in lines
    gone = {"id": "j", "filename": "a.csv", "status": "completed", "download": None}
    subject, lines, _ = facts({"type": "export.completed", "data": gone})
    assert subject == 'Your export "a.csv" is ready'
    assert ("Download", "the file is no longer available") in lines


def test_delivery_settings_are_parsed_and_checked() -> None:
    """The schedule reads `0.2,5m,1h`; owner addresses read JSON or `a=x,b=y`; a lease
    no longer than three timeouts is refused."""
    settings = Settings(webhook_retry_schedule="0.2,5m,1h", owner_emails="ann=a@x.test")
    assert settings.webhook_retry_schedule == [0.2, 300, 3600]
    assert settings.owner_emails == {"ann": "a@x.test"}
    assert Settings(owner_emails='{"bob": "b@x.test"}').owner_emails == {"bob": "b@x.test"}
    with pytest.raises(ValueError, match="DELIVERY_LEASE_SECONDS"):
        Settings(delivery_timeout_seconds=10, delivery_lease_seconds=30)


def test_the_delivery_packages_public_names_resolve() -> None:
    """Every name in `exportd.delivery.__all__` is importable from the package."""
    import exportd.delivery as delivery

    assert all(getattr(delivery, name) is not None for name in delivery.__all__)
    with pytest.raises(AttributeError):
        delivery.Nothing  # noqa: B018
