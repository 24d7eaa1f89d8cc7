"""`WebhookReceiver`: a real HTTP server on a loopback port that records every request
and answers as the test scripts it; `FakeDns`: a resolver whose answers a test sets."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from exportd.errors import TargetRefused

Answer = tuple[int, dict[str, str]]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The payload, if the request verifies with `secret` (standardwebhooks raises
        otherwise)."""
        return Webhook(secret).verify(self.body, self.headers)

    def verifies(self, secret: str) -> bool:
        try:
            self.verify(secret)
        except WebhookVerificationError:
            return False
        return True


@dataclass
class WebhookReceiver:
    """Answers 204 unless `answers` holds scripted answers (used in order). With `hold`
    set, a request waits there until the event is set (or the test ends)."""

    port: int
    answers: list[Answer] = field(default_factory=list)
    hold: threading.Event | None = None
    tls: ssl.SSLContext | None = None
    """Serve HTTPS with this context; the names clients send as SNI land in `sni`."""
    received: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self.hold is not None:
            self.hold.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _record(self, request: Received) -> Answer:
        with self._lock:
            self.received.append(request)
            answer = self.answers.pop(0) if self.answers else (204, {})
        if self.hold is not None:
            while not self.hold.wait(0.1) and not self._released.is_set():
                pass
        return answer


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra = receiver._record(Received(self.path, headers, body))
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class FakeDns:
    """A resolver for `AddressGuard`: `answers[host]` is what `host` resolves to now;
    every lookup is counted."""

    answers: dict[str, list[str]] = field(default_factory=dict)
    lookups: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.answers:
            raise TargetRefused("webhook_url_unresolvable", f"{host}: no such name", retryable=True)
        return list(self.answers[host])
