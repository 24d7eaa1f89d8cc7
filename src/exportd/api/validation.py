"""What request input may hold, checked where it enters the API, so that nothing the job
store, the JSON encoders or the file system cannot hold is accepted and fails later:

- text has no NUL and no unpaired surrogate (neither PostgreSQL nor UTF-8 can hold them);
- JSON objects (`params`, `options`) hold such text in keys and values, integers that fit
  in 64 bits, finite numbers, and at most `MAX_JSON_DEPTH` levels;
- a file name is one path segment of at most 255 bytes of UTF-8, without control
  characters, and not `.` or `..`;
- ids are the canonical UUID text the store makes;
- timestamps are ISO 8601 text with a time zone and stay in range once in UTC;
- numbers are JSON numbers (pydantic's lax mode would take `true` or `"5"`).

The checks are pydantic validators (`Text`, `JsonObject`, `Filename`, `Timestamp`), so a
refusal is an ordinary validation error naming the field and saying why."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from exportd.formats.plan import json_number

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_FILENAME_BYTES = 255
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)

Loc = tuple[str | int, ...]


def text_reason(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (no unpaired surrogates)"
    return None


def check_text(value: str) -> str:
    reason = text_reason(value)
    if reason is not None:
        raise PydanticCustomError("invalid_text", reason)
    return value


def json_errors(value: Any, loc: Loc = (), depth: int = 0) -> Iterator[tuple[Loc, str]]:
    """Where and why a parsed JSON value holds something a store or encoder refuses."""
    if depth > MAX_JSON_DEPTH:
        yield loc, f"must not be nested more than {MAX_JSON_DEPTH} levels deep"
    elif isinstance(value, str):
        if (reason := text_reason(value)) is not None:
            yield loc, reason
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            yield loc, "integers must fit in 64 bits (-2^63 to 2^63-1)"
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            yield loc, "numbers must be finite"
    elif isinstance(value, dict):
        for key, item in value.items():
            if (reason := text_reason(key)) is not None:
                yield (*loc, key), f"key {reason}"
            else:
                yield from json_errors(item, (*loc, key), depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from json_errors(item, (*loc, index), depth + 1)


def check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    """`value`, or a validation error at each place it cannot be stored."""
    errors = [
        InitErrorDetails(type=PydanticCustomError("invalid_json", reason), loc=loc, input=None)
        for loc, reason in json_errors(value)
    ]
    if errors:
        raise ValidationError.from_exception_data("json", errors)
    return value


def check_filename(value: str) -> str:
    check_text(value)
    if not value:
        raise PydanticCustomError("invalid_filename", "must not be empty")
    if value in (".", ".."):
        raise PydanticCustomError("invalid_filename", "must not be '.' or '..'")
    if "/" in value or "\\" in value:
        raise PydanticCustomError("invalid_filename", "must not contain '/' or '\\'")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise PydanticCustomError("invalid_filename", "must not contain control characters")
    if len(value.encode()) > MAX_FILENAME_BYTES:
        raise PydanticCustomError(
            "invalid_filename", f"must be at most {MAX_FILENAME_BYTES} bytes of UTF-8"
        )
    return value


def to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError(
            "datetime_range", "must be between 0001-01-01 and 9999-12-31 once in UTC"
        ) from None


def iso_timestamp(value: Any) -> Any:
    """Refuse what pydantic would read as a Unix time (numbers, numeric text)."""
    text = value.strip() if isinstance(value, str) else None
    if text is None or not text or text.lstrip("+-").replace(".", "", 1).isdigit():
        raise PydanticCustomError(
            "datetime_format", "Input should be an ISO 8601 date-time, e.g. 2024-05-01T12:00:00Z"
        )
    return value


def is_id(value: str) -> bool:
    """True when `value` could be an id the store made (a job's, a batch's)."""
    return ID.fullmatch(value) is not None


Text = Annotated[str, AfterValidator(check_text)]

RowId = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A cursor over stored rows (an event or audit id): what a 64-bit column can hold."""
OwnerName = Annotated[Text, Field(min_length=1, max_length=200)]
"""An owner named in a query (`?owner=`): text a job store can compare."""
"""A string with no NUL and no unpaired surrogate."""

JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_object)]
"""A JSON object every job store can hold (see `json_errors`)."""

FILENAME_PATTERN = r"^(?!\.\.?$)[^/\\\u0000-\u001f\u007f-\u009f]+$"
Filename = Annotated[
    str,
    AfterValidator(check_filename),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_FILENAME_BYTES,
            "pattern": FILENAME_PATTERN,
            "description": "one file name: at most 255 bytes of UTF-8, no '/', '\\' or "
            "control characters, not '.' or '..'",
        }
    ),
]

Timestamp = Annotated[AwareDatetime, BeforeValidator(iso_timestamp), AfterValidator(to_utc)]
"""An ISO 8601 timestamp with a time zone, in range once converted to UTC."""


JSON_NUMBER = BeforeValidator(json_number)
"""For numeric fields: `Annotated[int, Field(ge=1), JSON_NUMBER]`; the constraints come
first, so that they reach the JSON Schema as minimum and maximum."""


Cursor = Annotated[
    str,
    Field(pattern=f"^{ID.pattern}$", description="`next_cursor` of the previous page"),
]
IdText = Annotated[str, Field(pattern=f"^{ID.pattern}$")]
LabelFilter = Annotated[str, Field(pattern=r"^[^:]+:[\s\S]*$"), AfterValidator(check_text)]
"""`?label=key:value`: a key, a colon, any value."""
