"""`SmtpSender`: sends e-mail through the server in `EXPORTD_SMTP_URL`.

    smtp://[user:password@]host[:port][?starttls=true]   plain, or upgraded with STARTTLS
    smtps://[user:password@]host[:port]                   TLS from the first byte (465)

User and password are percent-decoded. A refusal with a 5xx reply for the message or
its recipient is permanent; a 4xx reply, a lost connection or a timeout is worth
another try (so is a failed login: fixing the credentials should not lose mail)."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from exportd.errors import ConfigurationError, DeliveryError

Security = Literal["none", "starttls", "tls"]
TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpConfig:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"EXPORTD_SMTP_URL is not a valid URL: {exc}") from exc
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError("EXPORTD_SMTP_URL must be smtp://host[:port] or smtps://…")
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    security: Security = "tls" if parts.scheme == "smtps" else "none"
    if security == "none" and query.get("starttls", "") in TRUE:
        security = "starttls"
    default_port = {"tls": 465, "starttls": 587, "none": 25}[security]
    return SmtpConfig(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class SmtpSender:
    """One SMTP session per message (messages are few; a session is cheap)."""

    def __init__(self, config: SmtpConfig, *, timeout: float = 15.0) -> None:
        self.config = config
        self.timeout = timeout

    def send(self, message: EmailMessage) -> None:
        """Send `message` to its `To`; raises `DeliveryError`."""
        try:
            with self._connect() as session:
                session.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                "smtp_recipient_refused",
                f"the server refused the recipient: {exc.recipients}",
                retryable=all(400 <= code < 500 for code in codes),
            ) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError("smtp_auth_failed", _reply(exc)) from exc
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise DeliveryError("smtp_rejected", _reply(exc), retryable=not permanent) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError("smtp_unavailable", f"the SMTP server failed: {exc}") from exc

    def _connect(self) -> smtplib.SMTP:
        config = self.config
        context = ssl.create_default_context()
        session: smtplib.SMTP
        if config.security == "tls":
            session = smtplib.SMTP_SSL(
                config.host, config.port, timeout=self.timeout, context=context
            )
        else:
            session = smtplib.SMTP(config.host, config.port, timeout=self.timeout)
        try:
            if config.security == "starttls":
                session.starttls(context=context)
            if config.username:
                session.login(config.username, config.password or "")
        except BaseException:
            session.close()
            raise
        return session


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
    return f"the SMTP server answered {exc.smtp_code} {text}".strip()
