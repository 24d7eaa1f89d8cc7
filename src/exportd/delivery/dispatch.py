"""`Dispatcher`: one attempt at one claimed message — build it, send it, and record what
happened: delivered; failed and tried again per the `RetrySchedule` (or a longer
`Retry-After`); failed for good; and for an endpoint, disabled after a `410 Gone` or
once its deliveries have kept failing for `disable_after`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import orjson

from exportd.delivery.content import LinkMaker, payload_for, render_email
from exportd.delivery.schedule import RetrySchedule, parse_retry_after
from exportd.delivery.signing import notify_secret, signed_headers
from exportd.delivery.smtp import SmtpSender
from exportd.errors import DeliveryError, JobNotFound
from exportd.jobs import Job, utcnow
from exportd.observability.metrics import record_delivery
from exportd.store import SqlJobStore
from exportd.store.deliveries import DeliveryAttempt, Message

if TYPE_CHECKING:
    from exportd.delivery.http import HttpSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    code: str | None = None
    error: str | None = None
    retryable: bool = True
    retry_after: float | None = None
    gone: bool = False

    @classmethod
    def from_error(cls, exc: DeliveryError) -> Outcome:
        return cls(False, code=exc.code, error=exc.message, retryable=exc.retryable)


NO_SMTP = Outcome(
    False,
    code="smtp_not_configured",
    error="EXPORTD_SMTP_URL is not set, so e-mail cannot be sent",
    retryable=False,
)


@dataclass
class Dispatcher:
    store: SqlJobStore
    http_factory: Callable[[], HttpSender]
    """Makes the HTTP sender when the first webhook goes out (see `http`)."""
    links: LinkMaker
    notify_key: bytes
    smtp: SmtpSender | None = None
    mail_from: str = "exportd@localhost"
    schedule: RetrySchedule = field(default_factory=RetrySchedule)
    disable_after: timedelta = timedelta(days=5)
    owner_emails: dict[str, str] = field(default_factory=dict)
    _http: HttpSender | None = field(default=None, init=False, repr=False)

    @property
    def http(self) -> HttpSender:
        if self._http is None:
            self._http = self.http_factory()
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def handle(self, msg: Message) -> Outcome:
        """Send `msg` once and record the attempt; returns what happened."""
        at, started = utcnow(), time.monotonic()
        try:
            outcome = self._send(msg)
        except Exception as exc:  # a bug must not leave the message in flight for good
            log.exception("message %s: sending crashed", msg.id)
            outcome = Outcome(False, code="internal_error", error=repr(exc))
        took = int((time.monotonic() - started) * 1000)
        attempt = DeliveryAttempt(
            msg.attempts, at, took, outcome.status_code, outcome.code, outcome.error
        )
        if outcome.delivered:
            self.store.message_delivered(msg, attempt)
        else:
            self._failed(msg, attempt, outcome)
        record_delivery(msg.channel, "delivered" if outcome.delivered else outcome.code or "failed")
        return outcome

    def _failed(self, msg: Message, attempt: DeliveryAttempt, outcome: Outcome) -> None:
        retry_at = None
        if outcome.retryable:
            delay = self.schedule.delay(msg.attempts, outcome.retry_after)
            retry_at = None if delay is None else utcnow() + timedelta(seconds=delay)
        webhook = msg.webhook_id is not None and msg.channel == "webhook"
        if webhook and outcome.gone:  # recorded and disabled together
            reason = "the endpoint answered 410 Gone"
            address, told = self._notice(msg)
            disabled = self.store.message_gone(msg, attempt, reason, notice_to=address)
            self._disabled(msg, disabled, reason, told)
            return
        since = self.store.message_failed(msg, attempt, retry_at)
        if webhook and since is not None and since <= attempt.at - self.disable_after:
            self._disable(msg, f"its deliveries have failed since {since.isoformat()}")

    def _notice(self, msg: Message) -> tuple[str | None, str]:
        """Whom to e-mail about a disabled endpoint, and what the log line says of it."""
        address = self.owner_emails.get(msg.owner)
        if address is None:
            return None, "no address for the owner in EXPORTD_OWNER_EMAILS"
        if self.smtp is None:
            return None, "EXPORTD_SMTP_URL is not set, so the owner is not e-mailed"
        return address, f"e-mailing {address}"

    def _disable(self, msg: Message, reason: str) -> None:
        assert msg.webhook_id is not None
        address, told = self._notice(msg)
        disabled = self.store.disable_webhook(
            msg.webhook_id, reason, notice_to=address, job_id=msg.job_id
        )
        self._disabled(msg, disabled, reason, told)

    def _disabled(self, msg: Message, disabled: bool, reason: str, told: str) -> None:
        if disabled:
            log.warning(
                "webhook %s of %s disabled: %s (%s)", msg.webhook_id, msg.owner, reason, told
            )

    def _send(self, msg: Message) -> Outcome:
        if msg.channel == "email":
            return self._send_email(msg)
        return self._send_webhook(msg)

    def _job(self, msg: Message) -> Job | None:
        if not msg.event_type.startswith("export."):
            return None
        try:
            return self.store.get(msg.job_id)
        except JobNotFound:
            return None

    def _send_webhook(self, msg: Message) -> Outcome:
        if msg.webhook_id is not None:
            hook = self.store.get_webhook(msg.webhook_id)
            if hook is None:
                return Outcome(False, code="webhook_deleted", error="gone", retryable=False)
            if hook.disabled_at is not None:
                why = hook.disabled_reason or "disabled"
                return Outcome(False, code="webhook_disabled", error=why, retryable=False)
            url, secrets = hook.url, hook.signing_secrets()
        else:
            url, secrets = msg.target, [notify_secret(self.notify_key, msg.owner)]
        body = orjson.dumps(payload_for(msg, self._job(msg), self.links))
        headers = signed_headers(secrets, msg.id, int(time.time()), body)
        try:
            response = self.http.post(url, headers, body)
        except DeliveryError as exc:
            return Outcome.from_error(exc)
        if 200 <= response.status < 300:
            return Outcome(True, status_code=response.status)
        return Outcome(
            False,
            status_code=response.status,
            code="http_status",
            error=f"the endpoint answered {response.status}",
            retryable=response.status != 410,
            retry_after=parse_retry_after(response.retry_after),
            gone=response.status == 410,
        )

    def _send_email(self, msg: Message) -> Outcome:
        if self.smtp is None:
            return NO_SMTP
        email = render_email(msg, payload_for(msg, self._job(msg), self.links), self.mail_from)
        try:
            self.smtp.send(email)
        except DeliveryError as exc:
            return Outcome.from_error(exc)
        return Outcome(True)
