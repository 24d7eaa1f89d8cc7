"""`/v1/webhooks`: an owner's endpoints, their secrets and deliveries.

Another owner's endpoint or delivery is a 404; admin tokens see every owner's. URLs are
checked when given (http/https; with SSRF protection on, a host that resolves to a
forbidden address is refused) and again at every delivery. Every endpoint has its own
secret; a job's one-off `notify.webhook_url` is signed with the owner's notify secret
(`GET /v1/webhooks/notify-secret`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from starlette.convertors import Convertor, register_url_convertor

from exportd.api.auth import CurrentPrincipal, CurrentRuntime, KnownPathIds
from exportd.api.openapi import problems
from exportd.api.problems import Problem
from exportd.api.validation import OwnerName
from exportd.api.webhook_schemas import (
    EVENTS,
    DeliveryOut,
    DeliveryPage,
    NotifySecretOut,
    SecretOut,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookPatch,
    delivery_out,
    webhook_out,
)
from exportd.delivery.signing import new_secret, notify_secret
from exportd.errors import InvalidTransition, TargetRefused
from exportd.runtime import Runtime
from exportd.store.webhooks import Webhook


class WebhookIdConvertor(Convertor[str]):
    """`{webhook_id:webhook}` matches only what `create_webhook` makes (`wh_` and 32 hex
    digits), so `/v1/webhooks/deliveries` and `/v1/webhooks/notify-secret` are never
    also a webhook's path (their `Allow` names only their own methods)."""

    regex = "wh_[0-9a-f]{32}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("webhook", WebhookIdConvertor())

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], dependencies=[KnownPathIds])

Limit = Annotated[int, Query(ge=1, le=200)]
DeliveryStatus = Literal["pending", "delivered", "failed"]


def check_webhook_url(runtime: Runtime, url: str) -> None:
    """422 with a stable code for a URL exportd will not call."""
    try:
        runtime.guard.check(url)
    except TargetRefused as exc:
        raise Problem(422, exc.code, exc.message) from None


def check_events(events: list[str] | None) -> list[str]:
    chosen = list(dict.fromkeys(events or []))
    unknown = [name for name in chosen if name not in EVENTS]
    if unknown:
        raise Problem(
            422,
            "unknown_event",
            f"unknown event {unknown[0]!r} (use {', '.join(EVENTS)})",
            allowed=list(EVENTS),
        )
    return chosen


def not_found() -> Problem:
    return Problem(404, "not_found", "no such webhook")


def found(hook: Webhook | None) -> Webhook:
    if hook is None:
        raise not_found()
    return hook


@router.post("", status_code=201, response_model=WebhookCreated, responses=problems(400, 409, 422))
def create_webhook(
    body: WebhookIn, principal: CurrentPrincipal, runtime: CurrentRuntime, response: Response
) -> WebhookCreated:
    """Register an endpoint; the answer carries its signing secret, shown only this once."""
    events = check_events(body.events)
    check_webhook_url(runtime, body.url)
    limit = runtime.settings.webhook_max_per_owner
    if runtime.store.count_webhooks(principal.owner) >= limit:
        raise Problem(409, "too_many_webhooks", f"an owner may have {limit} webhooks")
    secret = new_secret()
    hook = runtime.store.create_webhook(principal.owner, body.url, events, body.description, secret)
    response.headers["Location"] = f"/v1/webhooks/{hook.id}"
    return WebhookCreated(**webhook_out(hook), secret=secret)


@router.get("", response_model=WebhookPage, responses=problems(422))
def list_webhooks(
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    limit: Limit = 50,
    cursor: str | None = None,
) -> WebhookPage:
    hooks, next_cursor = runtime.store.list_webhooks(principal.scope, limit=limit, cursor=cursor)
    return WebhookPage(items=[WebhookOut(**webhook_out(h)) for h in hooks], next_cursor=next_cursor)


@router.get("/notify-secret", response_model=NotifySecretOut, responses=problems(403, 422))
def get_notify_secret(
    principal: CurrentPrincipal, runtime: CurrentRuntime, owner: OwnerName | None = None
) -> NotifySecretOut:
    """The secret that signs webhooks sent to a job's one-off `notify.webhook_url`
    (derived from the server's link-signing key: it changes only with that key). An
    admin may ask for any `owner`'s."""
    if owner is not None and owner != principal.owner and not principal.admin:
        raise Problem(403, "forbidden", "only an admin token can read another owner's secret")
    chosen = owner or principal.owner
    return NotifySecretOut(owner=chosen, secret=notify_secret(runtime.secret_key(), chosen))


@router.get("/deliveries", response_model=DeliveryPage, responses=problems(422))
def list_all_deliveries(
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    job_id: str | None = None,
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """Every message of the caller's, newest first: endpoints', one-off URLs', e-mails'."""
    found_, next_cursor = runtime.store.list_messages(
        principal.scope, job_id=job_id, status=status, limit=limit, cursor=cursor
    )
    return DeliveryPage(items=[delivery_out(m) for m in found_], next_cursor=next_cursor)


@router.post(
    "/deliveries/{message_id}/redeliver",
    status_code=202,
    response_model=DeliveryOut,
    responses=problems(404, 409),
)
def redeliver(message_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime) -> DeliveryOut:
    """Send the message again now, under the same id, with a fresh retry schedule."""
    try:
        msg = runtime.store.redeliver_message(message_id, principal.scope)
    except InvalidTransition as exc:
        raise Problem(409, "cannot_redeliver", str(exc)) from None
    if msg is None:
        raise Problem(404, "not_found", "no such delivery")
    return delivery_out(msg)


@router.get("/{webhook_id:webhook}", response_model=WebhookOut, responses=problems(404))
def get_webhook(
    webhook_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime
) -> WebhookOut:
    return WebhookOut(**webhook_out(found(runtime.store.get_webhook(webhook_id, principal.scope))))


@router.patch("/{webhook_id:webhook}", response_model=WebhookOut, responses=problems(400, 404, 422))
def update_webhook(
    webhook_id: str, body: WebhookPatch, principal: CurrentPrincipal, runtime: CurrentRuntime
) -> WebhookOut:
    """Change the URL, events or description; `enabled: true` revives a disabled one."""
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        check_webhook_url(runtime, changes["url"])
    if "events" in changes:
        changes["events"] = check_events(changes["events"])
    hook = runtime.store.update_webhook(webhook_id, principal.scope, changes)
    return WebhookOut(**webhook_out(found(hook)))


@router.delete("/{webhook_id:webhook}", status_code=204, responses=problems(404))
def delete_webhook(
    webhook_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime
) -> Response:
    """Delete the endpoint; its messages not yet delivered fail (`webhook_deleted`)."""
    if not runtime.store.delete_webhook(webhook_id, principal.scope):
        raise not_found()
    return Response(status_code=204)


@router.post(
    "/{webhook_id:webhook}/rotate-secret", response_model=SecretOut, responses=problems(404)
)
def rotate_secret(
    webhook_id: str, principal: CurrentPrincipal, runtime: CurrentRuntime
) -> SecretOut:
    """A new secret; the old one keeps signing too for `EXPORTD_WEBHOOK_SECRET_GRACE`
    (both signatures in `webhook-signature`), so receivers can switch without a gap."""
    secret = new_secret()
    grace = timedelta(seconds=runtime.settings.webhook_secret_grace)
    hook = found(runtime.store.rotate_webhook_secret(webhook_id, principal.scope, secret, grace))
    return SecretOut(
        id=hook.id, secret=secret, previous_secret_expires_at=hook.previous_secret_until
    )


@router.get(
    "/{webhook_id:webhook}/deliveries", response_model=DeliveryPage, responses=problems(404, 422)
)
def list_deliveries(
    webhook_id: str,
    principal: CurrentPrincipal,
    runtime: CurrentRuntime,
    status: DeliveryStatus | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> DeliveryPage:
    """The endpoint's messages, newest first, with every attempt."""
    found(runtime.store.get_webhook(webhook_id, principal.scope))
    messages, next_cursor = runtime.store.list_messages(
        principal.scope, webhook_id=webhook_id, status=status, limit=limit, cursor=cursor
    )
    return DeliveryPage(items=[delivery_out(m) for m in messages], next_cursor=next_cursor)
