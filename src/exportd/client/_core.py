"""The transport-free half of the client: how each call is built, how answers are parsed,
how problems map to exceptions and when a request may be retried. `Client` and
`AsyncClient` only send `Call`s and sleep."""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import httpx

from exportd.client._exceptions import (
    ApiError,
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServerError,
    TransportError,
    Unauthorized,
)
from exportd.client._models import (
    Artifact,
    Batch,
    ExporterInfo,
    ExportRequest,
    HistoryPage,
    Job,
    JobPage,
    Link,
)

T = TypeVar("T")
Params = list[tuple[str, str | int | float | bool | None]]

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "exportd-python/0.1.0"
PROBLEM_CLASSES: dict[int, type[ApiError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: InvalidRequest,
    429: RateLimited,
}


@dataclass(frozen=True)
class Call(Generic[T]):
    """One API request and how to read its answer. `idempotent` calls may be sent again
    after a broken connection or a 503; any call may be sent again when it never left."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Params | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True

    def finish(self, response: httpx.Response) -> T:
        """Raise the mapped `ApiError` for an error answer, else parse it."""
        if response.is_error:
            raise api_error(response)
        try:
            return self.parse(response)
        except (ValueError, KeyError, TypeError) as exc:
            method, url = _answered(response)
            raise ServerError(
                response.status_code,
                "invalid_response",
                f"unreadable answer: {exc}",
                method=method,
                url=url,
            ) from exc


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `retries` more tries, with full-jitter exponential backoff."""

    retries: int = 3
    base: float = 0.2
    cap: float = 2.0
    max_retry_after: float = 30.0
    """The longest server-asked wait (`Retry-After` on a 503) honoured before retrying;
    a longer one is not waited for: the error is raised instead."""

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """The wait before try `attempt + 1`: what a 503's `Retry-After` asks for, else
        full-jitter exponential backoff."""
        asked = _seconds(response.headers.get("retry-after")) if response is not None else None
        if asked is not None and asked >= 0:
            return asked
        return random.uniform(0, min(self.cap, self.base * 2**attempt))

    def retry_error(self, call: Call[Any], exc: httpx.HTTPError, attempt: int) -> bool:
        if attempt >= self.retries or not isinstance(exc, httpx.TransportError):
            return False
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        return never_sent or call.idempotent

    def retry_response(self, call: Call[Any], response: httpx.Response, attempt: int) -> bool:
        if attempt >= self.retries or response.status_code != 503 or not call.idempotent:
            return False
        asked = _seconds(response.headers.get("retry-after"))
        return asked is None or asked <= self.max_retry_after


def resolve_connection(url: str | None, token: str | None) -> tuple[str, str | None]:
    """Arguments first, then `EXPORTD_URL` / `EXPORTD_TOKEN`, then the local default."""
    url = url or os.environ.get("EXPORTD_URL") or DEFAULT_URL
    token = token or os.environ.get("EXPORTD_TOKEN") or None
    return url.rstrip("/"), token


def default_headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def transport_error(exc: Exception) -> TransportError:
    """`TransportError` saying in words what went wrong with which URL (never the httpx
    class name): "cannot reach http://host:8000: connection refused (GET /v1/exports)"."""
    request = getattr(exc, "_request", None)
    reason = transport_reason(exc)
    if request is None:
        return TransportError(f"request failed: {reason}", reason=reason)
    url = request.url
    if url.scheme not in ("http", "https"):
        return TransportError(f"cannot use {url}: {reason}", url=str(url), reason=reason)
    server = f"{url.scheme}://{url.netloc.decode()}"
    return TransportError(
        f"cannot reach {server}: {reason} ({request.method} {url.path})",
        url=str(url),
        reason=reason,
    )


ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
TRANSPORT_REASONS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "timed out connecting"),
    (httpx.ReadTimeout, "timed out waiting for an answer"),
    (httpx.WriteTimeout, "timed out sending the request"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
    (httpx.RemoteProtocolError, "the server closed the connection without a proper answer"),
    (httpx.UnsupportedProtocol, "the URL must start with http:// or https://"),
    (httpx.ProxyError, "the proxy refused the connection"),
    (httpx.ReadError, "the connection broke while reading the answer"),
    (httpx.WriteError, "the connection broke while sending the request"),
)


def transport_reason(exc: Exception) -> str:
    """What happened, in words: "connection refused", "timed out connecting"..."""
    for kind, reason in TRANSPORT_REASONS:
        if isinstance(exc, kind):
            return reason
    text = ERRNO.sub("", str(exc)).strip().rstrip(".")
    if not text or text == "All connection attempts failed":
        return "could not connect"
    return text[0].lower() + text[1:]


def api_error(response: httpx.Response) -> ApiError:
    """The exception for an error answer, from its problem details when it has them."""
    status = response.status_code
    try:
        problem = response.json()
    except (ValueError, httpx.ResponseNotRead):
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    code = str(problem.get("code") or _default_code(status))
    detail = str(problem.get("detail") or response.reason_phrase or "error")
    cls = PROBLEM_CLASSES.get(status, ServerError if status >= 500 else ApiError)
    method, url = _answered(response)
    if cls is RateLimited:
        retry_after = _seconds(response.headers.get("retry-after"))
        return RateLimited(
            status, code, detail, problem, method=method, url=url, retry_after=retry_after
        )
    return cls(status, code, detail, problem, method=method, url=url)


def _answered(response: httpx.Response) -> tuple[str | None, str | None]:
    """The method and URL of the request this is the answer to (when known)."""
    try:
        request = response.request
    except RuntimeError:
        return None, None
    return request.method, str(request.url)


def _default_code(status: int) -> str:
    return {401: "unauthorized", 404: "not_found", 429: "too_many_requests"}.get(status, "error")


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    return json.loads(response.content)


def _job(response: httpx.Response) -> Job:
    return Job.from_dict(_json(response))


def _nothing(response: httpx.Response) -> None:
    return None


# -- calls ----------------------------------------------------------------------------


def create_call(
    exporter: str,
    params: Mapping[str, Any] | None,
    *,
    format: str,
    compression: str,
    options: Mapping[str, Any] | None,
    priority: int,
    max_attempts: int | None,
    filename: str | None,
    ttl_seconds: int | None,
    idempotency_key: str | None,
    labels: Mapping[str, str] | None = None,
) -> Call[Job]:
    """POST /v1/exports with an `Idempotency-Key` (a new one unless given), which makes
    sending it again after a broken connection safe."""
    body = ExportRequest(
        exporter,
        dict(params or {}),
        format=format,
        compression=compression,
        options=dict(options or {}),
        priority=priority,
        max_attempts=max_attempts,
        filename=filename,
        ttl_seconds=ttl_seconds,
        labels=dict(labels or {}),
    ).to_json()
    key = idempotency_key or str(uuid.uuid4())
    return Call("POST", "/v1/exports", _job, json=body, headers={"Idempotency-Key": key})


def get_call(job_id: str) -> Call[Job]:
    return Call("GET", f"/v1/exports/{_segment(job_id)}", _job)


def list_call(
    *,
    status: str | Iterable[str] | None,
    exporter: str | None,
    batch_id: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    limit: int,
    cursor: str | None,
    label: Mapping[str, str] | None = None,
) -> Call[JobPage]:
    """GET /v1/exports; `label` keys and values must all match (`?label=key:value`)."""
    params: Params = []
    statuses = [status] if isinstance(status, str) else list(status or ())
    params += [("status", s) for s in statuses]
    params += [("label", f"{key}:{value}") for key, value in (label or {}).items()]
    for key, value in (("exporter", exporter), ("batch_id", batch_id), ("cursor", cursor)):
        if value is not None:
            params.append((key, value))
    for key, moment in (("created_after", created_after), ("created_before", created_before)):
        if moment is not None:
            params.append((key, moment.isoformat()))
    params.append(("limit", str(limit)))
    return Call("GET", "/v1/exports", lambda r: JobPage.from_dict(_json(r)), params=params or None)


def history_call(job_id: str, *, after: int, limit: int) -> Call[HistoryPage]:
    params: Params = [("after", str(after)), ("limit", str(limit))]
    return Call(
        "GET",
        f"/v1/exports/{_segment(job_id)}/history",
        lambda r: HistoryPage.from_dict(_json(r)),
        params=params,
    )


def events_path(job_id: str) -> str:
    return f"/v1/exports/{_segment(job_id)}/events"


def cancel_call(job_id: str) -> Call[Job]:
    return Call("POST", f"/v1/exports/{_segment(job_id)}/cancel", _job)


def retry_call(job_id: str) -> Call[Job]:
    """Not idempotent: a second retry of a job already queued again is a 409."""
    return Call("POST", f"/v1/exports/{_segment(job_id)}/retry", _job, idempotent=False)


def delete_call(job_id: str) -> Call[None]:
    return Call("DELETE", f"/v1/exports/{_segment(job_id)}", _nothing)


def batch_call(requests: Sequence[ExportRequest | Mapping[str, Any]]) -> Call[Batch]:
    """Not idempotent (the API takes no key for batches): never sent twice once it left."""
    exports = [r.to_json() if isinstance(r, ExportRequest) else dict(r) for r in requests]
    return Call(
        "POST",
        "/v1/batches",
        lambda r: Batch.from_dict(_json(r)),
        json={"exports": exports},
        idempotent=False,
    )


def get_batch_call(batch_id: str) -> Call[Batch]:
    return Call("GET", f"/v1/batches/{_segment(batch_id)}", lambda r: Batch.from_dict(_json(r)))


def exporters_call() -> Call[list[ExporterInfo]]:
    return Call("GET", "/v1/exporters", lambda r: [ExporterInfo.from_dict(e) for e in _json(r)])


def link_call(job_id: str, name: str | None) -> Call[str]:
    """GET /v1/exports/{id}/download answers 307 to the signed link; return the link."""

    def location(response: httpx.Response) -> str:
        if response.status_code not in (301, 302, 303, 307, 308):
            raise ValueError(f"expected a redirect to the file, got {response.status_code}")
        return str(response.url.join(response.headers["location"]))

    params: Params | None = [("name", name)] if name else None
    return Call("GET", f"/v1/exports/{_segment(job_id)}/download", location, params=params)


def new_link_call(job_id: str, name: str | None) -> Call[Link]:
    """POST /v1/exports/{id}/links: a link to hand out, with its expiry and checksum."""
    params: Params | None = [("name", name)] if name else None
    return Call(
        "POST",
        f"/v1/exports/{_segment(job_id)}/links",
        lambda r: Link.from_dict(_json(r)),
        params=params,
    )


def _segment(value: str) -> str:
    if not value or "/" in value or value in (".", ".."):
        raise InvalidRequest(400, "invalid_id", f"not an id: {value!r}")
    return value


def pick_artifact(job: Job, name: str | None) -> Artifact | None:
    """The file `download` fetches, as the server picks it: the named one, the only one,
    or the only zip bundle. None when the server must decide (it will explain)."""
    if name is not None:
        return next((a for a in job.artifacts if a.name == name), None)
    if len(job.artifacts) == 1:
        return job.artifacts[0]
    bundles = [a for a in job.artifacts if a.content_type == "application/zip"]
    return bundles[0] if len(bundles) == 1 else None
