"""Request and response bodies of `/v1/webhooks`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from exportd.store.deliveries import Message
from exportd.store.webhooks import Webhook

EVENTS = ("export.completed", "export.failed", "export.cancelled")
WEBHOOK_URL = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"
"""What the schema says of a webhook URL (the server checks more: it must parse, and
must not resolve to a private address unless allowed)."""

Event = Annotated[str, WithJsonSchema({"type": "string", "enum": list(EVENTS)})]
"""An event name; the schema lists them, the server answers `unknown_event` (with the
list) for any other."""
WebhookUrl = Annotated[
    str,
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 2000, "pattern": WEBHOOK_URL}),
]
"""Checked by the server (`invalid_webhook_url`, with the reason), described here."""


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(description="http:// or https://")
    events: list[Event] | None = Field(
        default=None, max_length=len(EVENTS), description=f"of {', '.join(EVENTS)}; none: all"
    )
    description: str | None = Field(default=None, max_length=500)


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrl = Field(default=None, description="leave out to keep the URL")  # type: ignore[assignment]  # not nullable: absent keeps it
    events: list[Event] | None = Field(default=None, max_length=len(EVENTS))
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = Field(
        default=None, description="true enables a disabled endpoint again; false disables it"
    )


class WebhookOut(BaseModel):
    id: str
    owner: str
    url: str
    events: list[str] = Field(description="empty: every event")
    description: str | None
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None = Field(description="start of the current failure streak")
    previous_secret_expires_at: datetime | None = Field(
        description="until then the secret replaced by the last rotation still signs"
    )
    created_at: datetime
    updated_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…, shown only this once")


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None


class SecretOut(BaseModel):
    id: str
    secret: str = Field(description="the new secret, shown only this once")
    previous_secret_expires_at: datetime | None


class NotifySecretOut(BaseModel):
    owner: str
    secret: str = Field(description="signs webhooks sent to a job's notify.webhook_url")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    duration_ms: int
    status_code: int | None
    code: str | None
    error: str | None


class DeliveryOut(BaseModel):
    id: str = Field(description="the message id: the webhook-id header, on every try")
    webhook_id: str | None
    channel: str = Field(description="webhook or email")
    target: str = Field(description="the URL or address")
    event_type: str
    job_id: str
    status: str = Field(description="pending, delivered or failed")
    attempt_count: int
    attempts: list[AttemptOut]
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


def webhook_out(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "owner": hook.owner,
        "url": hook.url,
        "events": hook.events,
        "description": hook.description,
        "enabled": hook.disabled_at is None,
        "disabled_at": hook.disabled_at,
        "disabled_reason": hook.disabled_reason,
        "failing_since": hook.failing_since,
        "previous_secret_expires_at": hook.previous_secret_until if hook.previous_secret else None,
        "created_at": hook.created_at,
        "updated_at": hook.updated_at,
    }


def delivery_out(msg: Message) -> DeliveryOut:
    return DeliveryOut(
        id=msg.id,
        webhook_id=msg.webhook_id,
        channel=msg.channel,
        target=msg.target,
        event_type=msg.event_type,
        job_id=msg.job_id,
        status=msg.status,
        attempt_count=msg.attempts,
        attempts=[AttemptOut(**entry) for entry in msg.history],
        next_attempt_at=msg.next_attempt_at if msg.status == "pending" else None,
        last_status_code=msg.last_status_code,
        last_error=msg.last_error,
        created_at=msg.created_at,
        delivered_at=msg.delivered_at,
    )
