"""What a message says, made at send time: the webhook body (the stored payload, plus a
fresh signed download link for a completed export) and the e-mail (subject, plain text
and HTML parts)."""

from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from exportd.jobs import Job, Status, utcnow
from exportd.storage.signing import sign
from exportd.store.deliveries import Message
from exportd.store.outbox import primary_artifact

OUTCOMES = {
    "export.completed": "is ready",
    "export.failed": "failed",
    "export.cancelled": "was cancelled",
}


@dataclass(frozen=True)
class LinkMaker:
    """Signed download links, made as `GET /v1/exports/{id}/download` makes them, but
    absolute (`public_url`)."""

    key: bytes
    public_url: str
    ttl_seconds: int

    def download(self, job: Job | None) -> dict[str, Any] | None:
        """`{url, expires_at, name}` for the job's file, None when there is none (the job
        was deleted, did not complete, or its files expired)."""
        if job is None or job.status != Status.COMPLETED or not job.artifacts:
            return None
        if job.expires_at is not None and job.expires_at <= utcnow():
            return None
        primary = primary_artifact(job.artifacts)
        if primary is None:
            return None
        expires_at = math.ceil(time.time()) + self.ttl_seconds
        signed = sign(self.key, job.id, primary.name, expires_at)
        return {
            "url": f"{self.public_url}/v1/files/{signed}",
            "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
            "name": primary.name,
        }


def payload_for(msg: Message, job: Job | None, links: LinkMaker) -> dict[str, Any]:
    """The message's payload; a completed export's `data.download` is a fresh link, or
    null when the files are gone."""
    payload = dict(msg.payload)
    if msg.event_type == "export.completed":
        payload["data"] = {**payload.get("data", {}), "download": links.download(job)}
    return payload


def export_name(data: dict[str, Any]) -> str:
    return str(data.get("filename") or data.get("exporter") or "export")


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{size:,} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def facts(payload: dict[str, Any]) -> tuple[str, list[tuple[str, str]], dict[str, Any] | None]:
    """The subject, the lines (label, value) and the download link of an e-mail."""
    data = payload.get("data", {})
    kind = str(payload.get("type", ""))
    if kind == "webhook.disabled":
        lines = [("Webhook", str(data.get("url"))), ("Reason", str(data.get("reason")))]
        if data.get("failing_since"):
            lines.append(("Failing since", str(data["failing_since"])))
        return f"Your exportd webhook was disabled: {data.get('url')}", lines, None
    name = export_name(data)
    lines = [("Export", name), ("Status", str(data.get("status"))), ("Job", str(data.get("id")))]
    if data.get("rows") is not None:
        lines.append(("Rows", f"{int(data['rows']):,}"))
    if data.get("size") is not None:
        lines.append(("Size", human_size(int(data["size"]))))
    if data.get("error"):
        error = data["error"]
        lines.append(("Error", f"{error.get('code')}: {error.get('message')}"))
    link = data.get("download")
    if kind == "export.completed" and link is None:
        lines.append(("Download", "the file is no longer available"))
    return f'Your export "{name}" {OUTCOMES.get(kind, kind)}', lines, link


def render_email(msg: Message, payload: dict[str, Any], mail_from: str) -> EmailMessage:
    """The e-mail for `msg` to its address; its Message-ID is the message id, the same
    on every retry."""
    subject, lines, link = facts(payload)
    text = [f"{label}: {value}" for label, value in lines]
    rows = [
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in lines
    ]
    if link is not None:
        text += ["", f"Download: {link['url']}", f"The link expires at {link['expires_at']}."]
        url = html.escape(link["url"], quote=True)
        rows.append(
            f"<tr><th align='left'>Download</th><td><a href=\"{url}\">{html.escape(link['name'])}"
            f"</a> (the link expires at {html.escape(link['expires_at'])})</td></tr>"
        )
    email = EmailMessage()
    email["Subject"] = subject
    email["From"] = mail_from
    email["To"] = msg.target
    email["Date"] = format_datetime(utcnow())
    email["Message-ID"] = f"<{msg.id}@exportd>"
    email.set_content("\n".join(text) + "\n")
    email.add_alternative(
        f"<!doctype html><html><body><h1>{html.escape(subject)}</h1>"
        f"<table>{''.join(rows)}</table></body></html>\n",
        subtype="html",
    )
    return email
