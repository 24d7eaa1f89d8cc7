"""`CuttingProxy`: a loopback TCP proxy in front of a test server that breaks connections
on purpose, to test what clients do when the network fails them."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

METHODS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ")

Rule = Callable[["Request"], "int | bytes | None"]
"""For each request: None forwards it; an int forwards it but cuts the connection after
that many bytes of the answer; bytes are sent back instead of forwarding (then cut)."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    index: int
    """How many earlier requests had the same method and path."""


@dataclass
class _Link:
    client: socket.socket
    upstream: socket.socket
    budget: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class CuttingProxy:
    """Forwards `127.0.0.1:<port>` to `upstream`; `rule` decides the fate of each request.
    `requests` records every request seen, `cuts` how many connections were cut."""

    def __init__(self, upstream: str, rule: Rule | None = None) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rule: Rule = rule or (lambda request: None)
        self.requests: list[Request] = []
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._links: list[_Link] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._start(self._accept)

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._stopping.set()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener.close()

    def seen(self, path_part: str) -> list[Request]:
        return [r for r in self.requests if path_part in r.path]

    def _start(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            self._start(self._pump_requests, link)
            self._start(self._pump_answers, link)

    def _pump_requests(self, link: _Link) -> None:
        try:
            while data := link.client.recv(65536):
                if data.startswith(METHODS):
                    fate = self.rule(self._record(data))
                    if isinstance(fate, bytes):
                        link.client.sendall(fate)
                        self._cut(link)
                        return
                    link.budget = fate
                link.upstream.sendall(data)
        except OSError:
            pass
        link.close()

    def _pump_answers(self, link: _Link) -> None:
        try:
            while data := link.upstream.recv(65536):
                budget = link.budget
                if budget is not None and len(data) >= budget:
                    link.client.sendall(data[:budget])
                    self._cut(link)
                    return
                if budget is not None:
                    link.budget = budget - len(data)
                link.client.sendall(data)
        except OSError:
            pass
        link.close()

    def _cut(self, link: _Link) -> None:
        with self._lock:
            self.cuts += 1
        link.close()

    def _record(self, data: bytes) -> Request:
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        first, *lines = head.split("\r\n")
        method, path, *_ = first.split(" ")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        with self._lock:
            index = sum(1 for r in self.requests if (r.method, r.path) == (method, path))
            request = Request(method, path, headers, index)
            self.requests.append(request)
        return request
