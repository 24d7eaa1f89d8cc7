"""Building a `Deliverer` from a runtime's settings."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from exportd.delivery.content import LinkMaker
from exportd.delivery.deliverer import Deliverer
from exportd.delivery.dispatch import Dispatcher
from exportd.delivery.schedule import RetrySchedule
from exportd.delivery.smtp import SmtpSender, parse_smtp_url

if TYPE_CHECKING:
    from exportd.delivery.http import HttpSender
    from exportd.runtime import Runtime


def build_dispatcher(runtime: Runtime) -> Dispatcher:
    settings = runtime.settings
    key = runtime.secret_key()
    smtp = None
    if settings.smtp_url:
        smtp = SmtpSender(
            parse_smtp_url(settings.smtp_url), timeout=settings.delivery_timeout_seconds
        )
    return Dispatcher(
        store=runtime.store,
        http_factory=lambda: _http_sender(runtime),
        links=LinkMaker(key, settings.resolved_public_url(), settings.link_ttl_seconds),
        notify_key=key,
        smtp=smtp,
        mail_from=settings.mail_from,
        schedule=RetrySchedule(tuple(settings.webhook_retry_schedule)),
        disable_after=timedelta(seconds=settings.webhook_disable_after),
        owner_emails=dict(settings.owner_emails),
    )


def build_deliverer(runtime: Runtime, holder: str) -> Deliverer:
    settings = runtime.settings
    return Deliverer(
        build_dispatcher(runtime),
        holder=holder,
        concurrency=settings.delivery_concurrency,
        lease_seconds=settings.delivery_lease_seconds,
        poll_interval=settings.poll_interval,
    )


def _http_sender(runtime: Runtime) -> HttpSender:
    from exportd.delivery.http import HttpSender

    return HttpSender(runtime.guard, timeout=runtime.settings.delivery_timeout_seconds)
