"""A decoder for `text/event-stream`, fed one line at a time (the WHATWG rules: `field:
value` lines, `:` comments, multi-line `data`, an empty line dispatches)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from exportd.client._models import Event


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str


class SSEDecoder:
    def __init__(self) -> None:
        self.last_event_id = ""
        self.retry_ms: int | None = None
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its end of line); return an event when one completes."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event, "\n".join(data), self.last_event_id)


def to_event(sse: ServerSentEvent) -> Event | None:
    """An exportd job event, or None for anything else on the stream."""
    try:
        data = json.loads(sse.data)
        return Event(int(sse.id), sse.event, data) if isinstance(data, dict) else None
    except ValueError:
        return None
