"""Webhooks and e-mail from the durable outbox: the deliverer and its parts.

Deliverer        claim loop and sender threads (deliverer.py)
Dispatcher       one attempt at one message: build, send, record (dispatch.py)
HttpSender       webhook POSTs, connecting only to checked addresses (http.py)
AddressGuard     SSRF protection: resolve once, check every address (addresses.py)
SmtpSender       e-mail over SMTP, SMTPS or STARTTLS (smtp.py)
RetrySchedule    when a failed message is tried again (schedule.py)
signing          Standard Webhooks signatures and secrets (signing.py)
content          the webhook body and the e-mail, made at send time (content.py)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exportd.delivery.addresses import AddressGuard, Resolver, system_resolver
    from exportd.delivery.content import LinkMaker
    from exportd.delivery.deliverer import Deliverer
    from exportd.delivery.dispatch import Dispatcher, Outcome
    from exportd.delivery.http import HttpSender
    from exportd.delivery.schedule import DEFAULT_DELAYS, RetrySchedule
    from exportd.delivery.smtp import SmtpConfig, SmtpSender, parse_smtp_url

_HOMES = {
    "AddressGuard": "addresses",
    "Resolver": "addresses",
    "system_resolver": "addresses",
    "LinkMaker": "content",
    "Deliverer": "deliverer",
    "Dispatcher": "dispatch",
    "Outcome": "dispatch",
    "HttpSender": "http",
    "DEFAULT_DELAYS": "schedule",
    "RetrySchedule": "schedule",
    "SmtpConfig": "smtp",
    "SmtpSender": "smtp",
    "parse_smtp_url": "smtp",
}


def __getattr__(name: str) -> Any:
    """Names are imported when first used: a worker that never sends a webhook never
    loads the HTTP client."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = [
    "DEFAULT_DELAYS",
    "AddressGuard",
    "Deliverer",
    "Dispatcher",
    "HttpSender",
    "LinkMaker",
    "Outcome",
    "Resolver",
    "RetrySchedule",
    "SmtpConfig",
    "SmtpSender",
    "parse_smtp_url",
    "system_resolver",
]
