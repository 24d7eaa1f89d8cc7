"""How numbers, sizes, rates, durations and times read on the page. `static/app.js`
formats live updates the same way (keep the two in step)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson


def count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{math.floor(value):.0f}%"


def rate(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return f"{value:,.0f} {unit}/s" if value >= 10 else f"{value:.1f} {unit}/s"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = math.ceil(max(seconds, 0))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60} s"
    return f"{total // 3600} h {total % 3600 // 60} min"


def size(value: int | None) -> str:
    if value is None:
        return ""
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{value} B" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def moment(value: datetime | None) -> str:
    """UTC, to the second; the page's script shows it in the reader's time zone."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def as_json(value: object) -> str:
    """A parameter value as the JSON a user would type."""
    return orjson.dumps(value).decode()


FILTERS = {
    "count": count,
    "percent": percent,
    "rate": rate,
    "duration": duration,
    "size": size,
    "moment": moment,
    "iso": iso,
    "as_json": as_json,
}
