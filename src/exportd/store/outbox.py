"""`OutboxStore`: the durable outbox. A job's terminal transition (completed, failed,
cancelled) writes, in its own transaction, one message row per target: each of the
owner's enabled webhooks subscribed to the event, and the job's one-off `notify` targets
(a webhook URL, e-mail addresses). A crash can therefore neither lose a message nor send
one for a transition that rolled back; deliverers take the rows later, with retries, and
the row's id is the message id receivers see on every try.
(`store.deliveries` is the other half: claiming and recording the sends.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exportd.jobs import Artifact, JobError, Progress, Status, new_id, utcnow
from exportd.store.base import StoreBase
from exportd.store.schema import outbox, webhooks

EVENT_TYPES = {
    Status.COMPLETED: "export.completed",
    Status.FAILED: "export.failed",
    Status.CANCELLED: "export.cancelled",
}
"""The message type for each terminal status."""


def new_message_id() -> str:
    return "msg_" + new_id().replace("-", "")


def primary_artifact(produced: Sequence[Artifact]) -> Artifact | None:
    """The file a download without `?name=` gives: the only one, the zip bundle, or the
    parts' manifest."""
    if len(produced) == 1:
        return produced[0]
    for art in produced:
        if art.content_type == "application/zip":
            return art
    for art in produced:
        if art.name == "manifest.json":
            return art
    return None


def job_summary(
    job: Any,
    status: Status,
    *,
    produced: Sequence[Artifact] = (),
    progress: Progress | None = None,
    error: JobError | None = None,
) -> dict[str, Any]:
    """What a message says about the job: small, and the same for every channel."""
    primary = primary_artifact(produced)
    return {
        "id": job.id,
        "owner": job.owner,
        "exporter": job.exporter,
        "format": job.format,
        "status": str(status),
        "filename": job.filename,
        "rows": progress.done if progress is not None else None,
        "size": sum(a.size for a in produced) if produced else None,
        "sha256": primary.sha256 if primary is not None else None,
        "files": [a.name for a in produced],
        "error": None if error is None else error.__dict__,
        "labels": dict(job.labels or {}),
    }


def notify_targets(notify: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The job's one-off targets as (channel, target) pairs."""
    if not notify:
        return []
    targets = []
    if notify.get("webhook_url"):
        targets.append(("webhook", str(notify["webhook_url"])))
    targets += [("email", str(address)) for address in notify.get("email") or ()]
    return targets


def messages_for(
    job: Any, status: Status, summary: dict[str, Any], hooks: Sequence[tuple[str, str, Any]]
) -> list[dict[str, Any]]:
    """The outbox rows of `job` reaching the terminal `status`: one per webhook of
    `hooks` ((id, url, events) of the owner's enabled ones) subscribed to it, and one per
    one-off `notify` target of the job."""
    event_type = EVENT_TYPES[status]
    rows = [
        message_row(job, event_type, "webhook", url, summary, hook_id)
        for hook_id, url, events in hooks
        if not events or event_type in events
    ]
    rows += [
        message_row(job, event_type, channel, target, summary, None)
        for channel, target in notify_targets(job.notify)
    ]
    return rows


def message_row(
    job: Any,
    event_type: str,
    channel: str,
    target: str,
    summary: dict[str, Any],
    webhook_id: str | None,
) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": new_message_id(),
        "owner": job.owner,
        "job_id": job.id,
        "event_type": event_type,
        "channel": channel,
        "webhook_id": webhook_id,
        "target": target,
        "payload": {"type": event_type, "timestamp": now.isoformat(), "data": summary},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "lease_until": None,
        "lease_holder": None,
        "last_status_code": None,
        "last_error": None,
        "history": [],
        "created_at": now,
        "delivered_at": None,
    }


ENABLED_HOOKS = sa.select(webhooks.c.id, webhooks.c.url, webhooks.c.events).where(
    webhooks.c.owner == sa.bindparam("owner"), webhooks.c.disabled_at.is_(None)
)
"""The owner's enabled webhooks (built once: it runs at every terminal transition)."""


class OutboxStore(StoreBase):
    def _queue_messages(
        self, conn: Connection, job: Any, status: Status, summary: dict[str, Any]
    ) -> int:
        """Write the messages of `job` reaching the terminal `status`, in `conn`'s
        transaction; returns how many. Reads the owner's webhooks (no row locks), so it
        may run anywhere before the transaction's events are written."""
        hooks = conn.execute(ENABLED_HOOKS, {"owner": job.owner}).all()
        rows = messages_for(job, status, summary, [tuple(hook) for hook in hooks])
        if rows:
            conn.execute(outbox.insert(), rows)
            self._notify(conn, "outbox", {"count": len(rows)})
        return len(rows)
