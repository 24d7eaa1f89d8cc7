"""`HttpSender`: POSTs a webhook over a connection pool that only connects to checked
addresses.

The pool is httpcore's, with a network backend of our own (`GuardedBackend`): asked to
connect to `host:port`, it resolves the host once through the `AddressGuard` (which
checks every address it gets) and opens the TCP connection to one of those very
addresses. httpcore then starts TLS with the URL's host as SNI and for certificate
verification, and the request keeps the URL's `Host` header, so the receiver sees a
normal request while the address connected to is exactly the one checked: no second
DNS lookup, no rebinding gap. Redirects are never followed (a 3xx is a failed
attempt), and no proxy settings from the environment are read."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

from exportd.delivery.addresses import AddressGuard, Target, parse_url
from exportd.errors import DeliveryError

USER_AGENT = "exportd-webhooks/1"
MAX_RESPONSE_BYTES = 64 * 1024


class GuardedBackend(httpcore.NetworkBackend):
    """Connects only to addresses the guard resolved and checked."""

    def __init__(self, guard: AddressGuard) -> None:
        self._guard = guard
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self._guard.resolve(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # resolve() returns at least one address
        raise failure

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class HttpResponse:
    status: int
    retry_after: str | None


class HttpSender:
    """Thread-safe; one per deliverer."""

    def __init__(
        self,
        guard: AddressGuard,
        *,
        timeout: float = 15.0,
        connections: int = 16,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` defaults to the system's trust store, verifying certificates
        against the URL's host name."""
        self.timeout = timeout
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or ssl.create_default_context(),
            max_connections=connections,
            keepalive_expiry=30.0,
            network_backend=GuardedBackend(guard),
        )

    def post(self, url: str, headers: dict[str, str], body: bytes) -> HttpResponse:
        """POST `body`; returns the status (any) or raises `DeliveryError` when no answer
        came (`TargetRefused` for a forbidden or unresolvable host)."""
        target = parse_url(url)
        host = _ascii_host(target)
        sent: list[tuple[bytes | str, bytes | str]] = [
            ("host", _host_header(target, host)),
            ("user-agent", USER_AGENT),
            ("content-type", "application/json"),
            *headers.items(),
        ]
        address = httpcore.URL(
            scheme=target.scheme, host=host, port=target.port, target=_request_target(url)
        )
        timeouts = {key: self.timeout for key in ("connect", "read", "write", "pool")}
        try:
            with self._pool.stream(
                "POST", address, headers=sent, content=body, extensions={"timeout": timeouts}
            ) as response:
                self._drain(response)
                return HttpResponse(response.status, _header(response.headers, b"retry-after"))
        except httpcore.TimeoutException as exc:
            raise DeliveryError("timeout", f"no answer within {self.timeout:g} s") from exc
        except httpcore.ConnectError as exc:
            raise DeliveryError("connect_error", f"could not connect: {exc}") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            raise DeliveryError("network_error", f"the connection failed: {exc}") from exc

    def _drain(self, response: httpcore.Response) -> None:
        """Read (a bounded part of) the answer, so the connection can be reused; the
        body itself is not used."""
        deadline = time.monotonic() + self.timeout
        read = 0
        for chunk in response.iter_stream():
            read += len(chunk)
            if read > MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                break

    def close(self) -> None:
        self._pool.close()


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _ascii_host(target: Target) -> str:
    """The host as sent on the wire: IDNA for international names."""
    try:
        return target.host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise DeliveryError(
            "invalid_webhook_url", f"bad host name: {exc}", retryable=False
        ) from exc


def _host_header(target: Target, host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = {"http": 80, "https": 443}[target.scheme]
    return shown if target.port == default else f"{shown}:{target.port}"


def _request_target(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
