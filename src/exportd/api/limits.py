"""Refuse request bodies over a size limit before they are read into memory: at once when
`Content-Length` declares too much, and as soon as a chunked body has passed the limit."""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    """Raised by the counting `receive` while the app reads the body; FastAPI passes an
    `HTTPException` raised there on (other errors it turns into 400), and the API's
    handler answers 413 `body_too_large`."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


def refusal(path: str) -> bytes:
    problem = {
        "type": "https://exportd.dev/problems/body_too_large",
        "title": "Content too large",
        "status": 413,
        "code": "body_too_large",
        "detail": "the request body is too large",
        "instance": path,
    }
    return json.dumps(problem).encode()


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, scope.get("path", ""))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise BodyTooLarge
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Send, path: str) -> None:
        body = refusal(path)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
