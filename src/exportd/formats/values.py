"""How single values are spelled where a format has no type of its own (JSON, HTML,
Markdown, spreadsheet fallbacks)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import uuid
from typing import Any


def json_default(value: Any) -> Any:
    """orjson's fallback: decimals as exact strings, bytes as base64."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, uuid.UUID | dt.timedelta):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def to_text(value: Any) -> str:
    """A value as text: ISO 8601 for dates and times, exact digits for decimals and
    integers, `true`/`false`, base64 for bytes, and the empty string for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list | dict):
        import orjson

        return orjson.dumps(value, default=json_default).decode()
    return str(value)
