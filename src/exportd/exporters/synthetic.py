"""`synthetic`: seeded, deterministic fake data from a column spec.

Rows are generated in fixed blocks of `BLOCK_ROWS`, each column of each block from its own
random stream keyed by `(seed, block index, column position)`.

Determinism: the same `seed`, `rows` and `columns` give the same rows, byte for byte in
every format, whichever process or worker runs the export, in any time zone (on
little-endian machines, i.e. every supported one). A column's values depend only on the
seed, the column's position, its own spec and the block, so renaming a column or appending
one leaves the others as they were, and changing `rows` leaves every block before the last
as it was. The values themselves may change between exportd versions (there is no
compatibility promise for them yet) and with numpy versions that change `PCG64` or
`Generator.integers` / `random` / `uniform`.

Speed: generation is vectorised and is not the bottleneck of an export. Strings are never
built per row: names, e-mails, notes and choices are one Arrow `take` from a pool of parts
built once per process (separators baked in, so the parts of a row land next to each other
and need no join); UUIDs are hex-encoded with a 64 K-entry table; nulls are a validity
bitmap laid over the values.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from exportd.config import Settings
from exportd.errors import PermanentError
from exportd.exporters.registry import ExportContext, exporter
from exportd.formats.plan import json_number

BLOCK_ROWS = 65_536
MAX_ROWS = 10_000_000_000

ShortColumnType = Literal[
    "sequence",
    "int",
    "float",
    "decimal",
    "bool",
    "text",
    "name",
    "email",
    "date",
    "timestamp",
    "uuid",
]
"""The types a column may name alone (a `choice` column needs its options)."""
ColumnType = Literal[ShortColumnType, "choice"]

MAX_BOUND = 1e15
"""The largest `min`/`max` magnitude: every generator's arithmetic stays within 64 bits."""
DEFAULT_RANGES = {"sequence": (1.0, 1e18), "int": (0.0, 1e6), "float": (0.0, 1e3)}
DEFAULT_RANGE = (0.0, 1e4)
"""Where `min` and `max` are not given: per type, else (decimal and the rest) this."""

CHOICE_NEEDS_OPTIONS: JsonDict = {
    "if": {"properties": {"type": {"const": "choice"}}},
    "then": {"required": ["options"], "properties": {"options": {"type": "array", "minItems": 1}}},
}


class Column(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=CHOICE_NEEDS_OPTIONS)

    type: ColumnType = Field(description="what the column holds")
    options: list[str] | None = Field(default=None, description="values for `choice`")
    min: Annotated[float, Field(ge=-MAX_BOUND, le=MAX_BOUND)] | None = Field(
        default=None,
        description="smallest value of int, float, decimal, date, timestamp; at most `max` "
        "(or the type's default max)",
    )
    max: Annotated[float, Field(ge=-MAX_BOUND, le=MAX_BOUND)] | None = Field(
        default=None, description="largest value of int, float, decimal, date, timestamp"
    )
    null_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.0, description="share of the rows where the value is null"
    )

    _numbers = field_validator("min", "max", "null_fraction", mode="before")(json_number)

    @property
    def low(self) -> float:
        return self.min if self.min is not None else DEFAULT_RANGES.get(self.type, DEFAULT_RANGE)[0]

    @property
    def high(self) -> float:
        return self.max if self.max is not None else DEFAULT_RANGES.get(self.type, DEFAULT_RANGE)[1]

    @model_validator(mode="after")
    def _check(self) -> Column:
        if self.type == "choice" and not self.options:
            raise ValueError("a choice column needs a non-empty `options` list")
        if self.type != "sequence" and self.low > self.high:  # a sequence only starts at min
            raise ValueError("min must not exceed max (a default counts where one is not given)")
        return self


def _column_kind(value: Any) -> str:
    return "type" if isinstance(value, str) else "column"


ColumnSpec = Annotated[
    Annotated[Column, Tag("column")] | Annotated[ShortColumnType, Tag("type")],
    Discriminator(_column_kind),
]
"""A column: its type alone, or a `Column`; errors name only the form that was given."""

DEFAULT_COLUMNS: dict[str, Column | ShortColumnType] = {
    "order_id": "sequence",
    "order_uuid": "uuid",
    "customer_name": "name",
    "customer_email": "email",
    "status": Column(
        type="choice", options=["pending", "paid", "shipped", "delivered", "refunded"]
    ),
    "quantity": Column(type="int", min=1, max=12),
    "amount": Column(type="decimal", min=1, max=2500),
    "currency": Column(type="choice", options=["USD", "EUR", "GBP", "JPY"]),
    "is_gift": "bool",
    "created_at": "timestamp",
    "ship_date": "date",
    "note": Column(type="text", null_fraction=0.3),
}


class SyntheticParams(BaseModel):
    """`rows` is at most the server's EXPORTD_SYNTHETIC_MAX_ROWS (100,000,000 unless set)."""

    model_config = ConfigDict(extra="forbid")

    rows: Annotated[int, Field(ge=0, le=MAX_ROWS)] = Field(
        default=1000, description="how many rows to make"
    )
    seed: int = Field(default=0, description="the same seed gives the same rows")
    columns: dict[str, ColumnSpec] = Field(
        default_factory=lambda: dict(DEFAULT_COLUMNS),
        min_length=1,
        description="name -> a type (`int`, `email`...) or {type, options, min, max, "
        "null_fraction}; default: an orders table",
    )

    _numbers = field_validator("rows", "seed", mode="before")(json_number)

    @classmethod
    def json_schema_for(cls, settings: Settings, **kw: Any) -> dict[str, Any]:
        """The JSON Schema with `rows` held to the server's cap, as validation holds it."""
        schema = cls.model_json_schema(**kw)
        schema["properties"]["rows"]["maximum"] = settings.synthetic_max_rows
        return schema

    @field_validator("rows")
    @classmethod
    def _within_the_cap(cls, rows: int, info: ValidationInfo) -> int:
        """Held to `settings.synthetic_max_rows` when validated with
        `context={"settings": settings}`, as the API does."""
        settings = (info.context or {}).get("settings")
        if isinstance(settings, Settings):
            check_rows(rows, settings)
        return rows

    def column_specs(self) -> dict[str, Column]:
        return {
            name: spec if isinstance(spec, Column) else Column(type=spec)
            for name, spec in self.columns.items()
        }


FIRST = [
    "Ada",
    "Alan",
    "Amara",
    "Arjun",
    "Beatriz",
    "Chen",
    "Chloé",
    "Dmitri",
    "Elena",
    "Emeka",
    "Fatima",
    "Felix",
    "Grace",
    "Hana",
    "Ibrahim",
    "Ingrid",
    "Jamal",
    "Jin",
    "Kofi",
    "Lars",
    "Leila",
    "Lucía",
    "Mateo",
    "Mei",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Rafael",
    "Sakura",
    "Sofia",
    "Tariq",
    "Thandiwe",
    "Umar",
    "Valentina",
    "Wei",
    "Yara",
    "Yusuf",
    "Zoë",
]
LAST = [
    "Abe",
    "Adeyemi",
    "Andersen",
    "Baptiste",
    "Bianchi",
    "Chowdhury",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fernández",
    "García",
    "Haddad",
    "Hoang",
    "Ivanova",
    "Jansen",
    "Kaur",
    "Kim",
    "Kowalski",
    "Larsen",
    "Mensah",
    "Müller",
    "Nakamura",
    "Novak",
    "O'Brien",
    "Okafor",
    "Patel",
    "Pereira",
    "Quinn",
    "Rossi",
    "Sato",
    "Schmidt",
    "Silva",
    "Tanaka",
    "Umarov",
    "van Dijk",
    "Wang",
    "Yilmaz",
    "Zhou",
]
DOMAINS = ["example.com", "example.org", "example.net", "mail.test"]
WORDS = [
    "quick",
    "brown",
    "fox",
    "order",
    "shipped",
    "fragile",
    "gift",
    "wrap",
    "express",
    "delivery",
    "leave",
    "at",
    "door",
    "call",
    "before",
    "arrival",
    '"quoted"',
    "comma,",
    "newline\nsemicolon;",
    "tab\tunicode",
    "ünïcödé",
    "注文",
    "✓",
    "refund",
    "partial",
]
EPOCH_DAY = date(2020, 1, 1).toordinal() - date(1970, 1, 1).toordinal()
EPOCH_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
SPAN_DAYS = 5 * 365
DASH = ord("-")

Generator = Callable[[np.random.Generator, int, int, Column], pa.Array]


@dataclass(frozen=True)
class Parts:
    """Strings made of one pick from each of several part lists, concatenated.

    All part lists live in one Arrow string `pool`; part list `i` starts at `starts[i]` and
    holds `sizes[i]` values. Separators are baked into the parts, so a row is a plain
    concatenation and a whole block needs one `take`.
    """

    pool: pa.Array
    starts: npt.NDArray[np.int32]
    sizes: npt.NDArray[np.int32]


def _parts(*lists: Sequence[str]) -> Parts:
    sizes = np.array([len(values) for values in lists], dtype=np.int32)
    starts = (np.cumsum(sizes) - sizes).astype(np.int32)
    return Parts(_strings([value for values in lists for value in values]), starts, sizes)


def _strings(values: Sequence[str]) -> pa.Array:
    """An Arrow string array laid out directly (`pa.array` on a list would import pandas)."""
    encoded = [value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(value) for value in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def _concat_pick(parts: Parts, rng: np.random.Generator, n: int) -> pa.Array:
    """`n` strings, each one random value of every part list, concatenated, in one `take`.

    The `take` of `k * n` interleaved indices lays the row's parts out next to each other
    in its data buffer, so every k-th offset of it is the joined row: no copy to join.
    """
    k = len(parts.sizes)
    indices = np.empty((n, k), dtype=np.int32)
    for part, (first, size) in enumerate(zip(parts.starts, parts.sizes, strict=True)):
        indices[:, part] = rng.integers(first, first + size, n, dtype=np.int32)
    values = parts.pool.take(_fixed(pa.int32(), indices.reshape(-1)))
    if k == 1:
        return values
    offsets = np.frombuffer(values.buffers()[1], np.int32, k * n + 1, 4 * values.offset)
    joined = np.ascontiguousarray(offsets[::k])
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(joined), values.buffers()[2]])


def _ascii(text: str) -> str:
    """Lower-case ASCII letters only (`"O'Brien"` -> `obrien`, `"Müller"` -> `muller`)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in folded.lower() if c.isalnum())


@cache
def _name_parts() -> Parts:
    return _parts([f"{first} {last}" for first in FIRST for last in LAST])


@cache
def _email_parts() -> Parts:
    """`first.last.` then `NNN@domain`: the same 6M distinct addresses as four picks."""
    locals_ = [f"{_ascii(first)}.{_ascii(last)}." for first in FIRST for last in LAST]
    suffixes = [f"{number}@{domain}" for number in range(1, 999) for domain in DOMAINS]
    return _parts(locals_, suffixes)


@cache
def _text_parts() -> Parts:
    """Two word pairs, so a note is four independent words (quotes, newlines and all)."""
    pairs = [f"{first} {second}" for first in WORDS for second in WORDS]
    return _parts([f"{pair} " for pair in pairs], pairs)


@lru_cache(maxsize=256)
def _choice_parts(options: tuple[str, ...]) -> Parts:
    return _parts(options)


@cache
def _hex_quads() -> npt.NDArray[np.uint32]:
    """Four lower-case hex digits, as 4 ASCII bytes, for each little-endian pair of bytes."""
    pairs = np.frombuffer(b"".join(f"{b:02x}".encode() for b in range(256)), np.uint16)
    quad = np.arange(65_536, dtype=np.uint32)
    quads: npt.NDArray[np.uint32] = pairs[quad & 0xFF].astype(np.uint32) | (
        pairs[quad >> 8].astype(np.uint32) << 16
    )
    return quads


def _fixed(type_: pa.DataType, values: npt.NDArray[Any]) -> pa.Array:
    """A null-free Arrow array over a numpy array's memory (no conversion)."""
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _sequence(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    first = int(col.low) + start
    return _fixed(pa.int64(), np.arange(first, first + n, dtype=np.int64))


def _int(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    low, high = int(col.low), int(col.high)
    return _fixed(pa.int64(), rng.integers(low, high, n, dtype=np.int64, endpoint=True))


def _float(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    low, high = col.low, col.high
    return _fixed(pa.float64(), np.round(rng.uniform(low, high, n), 4))


def _decimal(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    low, high = col.low, col.high
    cents = rng.integers(int(low * 100), int(high * 100), n, dtype=np.int64, endpoint=True)
    words = np.empty((n, 2), dtype=np.int64)  # 128-bit little-endian two's complement
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(pa.decimal128(14, 2), n, [None, pa.py_buffer(words)])


def _bool(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    bits = rng.bit_generator.random_raw(-(-n // 64))  # one random bit per row, packed
    return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])


def _text(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    return _concat_pick(_text_parts(), rng, n)


def _name(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    return _concat_pick(_name_parts(), rng, n)


def _email(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    return _concat_pick(_email_parts(), rng, n)


def _date(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    days = rng.integers(EPOCH_DAY, EPOCH_DAY + SPAN_DAYS, n, dtype=np.int32)
    return _fixed(pa.date32(), days)


def _timestamp(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    us = rng.integers(0, SPAN_DAYS * 86_400, n, dtype=np.int64) * 1_000_000 + EPOCH_US
    return _fixed(pa.timestamp("us", tz="UTC"), us)


# Where each 4-hex-digit group of a version-4 UUID goes in its 36 characters, and the dashes.
UUID_QUADS = (0, 4, 9, 14, 19, 24, 28, 32)
UUID_DASHES = (8, 13, 18, 23)


def _uuid(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    raw = rng.bit_generator.random_raw(2 * n).view(np.uint8).reshape(n, 16)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40  # version 4
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    pairs, quads = raw.view(np.uint16), _hex_quads()
    text = np.empty(36 * max(n, 1), dtype=np.uint8)  # numpy refuses views into 0 bytes
    for column, at in enumerate(UUID_QUADS):  # 4 hex digits straight into each row's slot
        slot = np.ndarray((n,), np.uint32, text, at, (36,))
        np.take(quads, pairs[:, column], out=slot, mode="clip")  # clip: no bounds buffer
    for at in UUID_DASHES:
        text[at : 36 * n : 36] = DASH
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])


def _choice(rng: np.random.Generator, start: int, n: int, col: Column) -> pa.Array:
    assert col.options
    return _concat_pick(_choice_parts(tuple(col.options)), rng, n)


GENERATORS: dict[str, Generator] = {
    "sequence": _sequence,
    "int": _int,
    "float": _float,
    "decimal": _decimal,
    "bool": _bool,
    "text": _text,
    "name": _name,
    "email": _email,
    "date": _date,
    "timestamp": _timestamp,
    "uuid": _uuid,
    "choice": _choice,
}


def _with_nulls(array: pa.Array, rng: np.random.Generator, fraction: float) -> pa.Array:
    """`array` with each row null with probability `fraction` (a validity bitmap, no copy)."""
    keep = rng.random(len(array)) >= fraction
    if array.offset or array.buffers()[0] is not None:  # not laid out by us: the slow way
        return pc.if_else(pa.array(~keep), None, array)
    valid = pa.py_buffer(np.packbits(keep, bitorder="little"))
    buffers = [valid, *array.buffers()[1:]]
    return pa.Array.from_buffers(array.type, len(array), buffers)


def generate_block(params: SyntheticParams, block: int, n: int) -> pa.RecordBatch:
    start = block * BLOCK_ROWS
    seed = params.seed % 2**64
    names, arrays = [], []
    for index, (name, col) in enumerate(params.column_specs().items()):
        rng = np.random.default_rng([seed, block, index])
        array = GENERATORS[col.type](rng, start, n, col)
        if col.null_fraction:
            array = _with_nulls(array, rng, col.null_fraction)
        names.append(name)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=names)


def generate(params: SyntheticParams) -> Iterator[pa.RecordBatch]:
    for block, start in enumerate(range(0, params.rows, BLOCK_ROWS)):
        yield generate_block(params, block, min(BLOCK_ROWS, params.rows - start))


def check_rows(rows: int, settings: Settings) -> None:
    """Refuse more rows than `EXPORTD_SYNTHETIC_MAX_ROWS` allows."""
    cap = settings.synthetic_max_rows
    if rows > cap:
        raise PydanticCustomError(
            "less_than_equal",
            "Input should be less than or equal to {le} (EXPORTD_SYNTHETIC_MAX_ROWS)",
            {"le": cap},
        )


@exporter("synthetic", params=SyntheticParams)
def synthetic(params: SyntheticParams, ctx: ExportContext) -> Iterator[pa.RecordBatch]:
    """Seeded, deterministic fake rows (an orders table unless `columns` says otherwise)."""
    try:
        check_rows(params.rows, ctx.settings)  # jobs queued before the cap was lowered
    except PydanticCustomError as exc:
        raise PermanentError(f"params.rows: {exc.message()}", code="invalid_params") from None
    ctx.set_total(params.rows)
    ctx.step("generating rows")
    yield from generate(params)
