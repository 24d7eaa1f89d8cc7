"""The synthetic exporter's determinism and the CSV/NDJSON writers' output."""

from __future__ import annotations

import gzip
import io
import json
import re
import uuid
from decimal import Decimal
from typing import get_args

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from pydantic import ValidationError

from exportd.exporters.synthetic import (
    BLOCK_ROWS,
    ColumnType,
    SyntheticParams,
    generate,
    generate_block,
)
from exportd.formats import FORMATS, HashingSink, Stream

ALL_TYPES = list(get_args(ColumnType))


def write(params: SyntheticParams, fmt: str, compression: str) -> tuple[bytes, HashingSink]:
    buffer = io.BytesIO()
    sink = HashingSink(buffer)
    writer = FORMATS[fmt].writer(Stream(sink, compression))
    for batch in generate(params):
        writer.write(batch)
    writer.close()
    return buffer.getvalue(), sink


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_same_seed_gives_identical_bytes(compression: str) -> None:
    """The same seed and params give byte-identical files; another seed does not."""
    params = SyntheticParams(rows=BLOCK_ROWS + 10, seed=7)
    first, sink = write(params, "csv", compression)
    second, _ = write(params, "csv", compression)
    other, _ = write(SyntheticParams(rows=BLOCK_ROWS + 10, seed=8), "csv", compression)
    assert first == second
    assert first != other
    assert sink.size == len(first)


def test_csv_reads_back_with_the_generated_rows() -> None:
    """The CSV parses back (gzip included) to the rows that were generated."""
    params = SyntheticParams(rows=3000, seed=3)
    data, _ = write(params, "csv", "gzip")
    options = pacsv.ConvertOptions(strings_can_be_null=True)  # CSV writes null as empty
    table = pacsv.read_csv(io.BytesIO(gzip.decompress(data)), convert_options=options)
    source = pa.Table.from_batches(list(generate(params)))
    assert table.num_rows == 3000
    assert table.column("order_id").to_pylist() == list(range(1, 3001))
    assert table.column("customer_email").to_pylist() == source.column("customer_email").to_pylist()
    assert table.column("note").null_count == source.column("note").null_count > 0


def test_ndjson_keeps_decimals_exact_and_nulls() -> None:
    """NDJSON writes one object per line, decimals as exact strings, nulls as null."""
    params = SyntheticParams(
        rows=500,
        columns={
            "id": "sequence",
            "price": "decimal",
            "maybe": {"type": "int", "null_fraction": 0.5},
        },
    )
    data, _ = write(params, "ndjson", "none")
    rows = [json.loads(line) for line in data.decode().splitlines()]
    source = pa.Table.from_batches(list(generate(params))).to_pylist()
    assert len(rows) == 500
    assert [Decimal(r["price"]) for r in rows] == [s["price"] for s in source]
    assert any(r["maybe"] is None for r in rows)


def test_every_column_type_generates() -> None:
    """Each column type of the spec produces a column of the right length and Arrow type."""
    columns = {t: ({"type": t, "options": ["a", "b"]} if t == "choice" else t) for t in ALL_TYPES}
    batch = next(generate(SyntheticParams(rows=100, columns=columns)))
    assert batch.num_rows == 100
    assert batch.schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert batch.schema.field("date").type == pa.date32()
    uuids = batch.column("uuid").to_pylist()
    assert all(len(u) == 36 and u[14] == "4" for u in uuids)
    assert set(batch.column("choice").to_pylist()) <= {"a", "b"}


def test_bad_column_spec_is_refused() -> None:
    """A choice without options is a validation error naming the problem."""
    with pytest.raises(ValidationError, match="options"):
        SyntheticParams(columns={"x": {"type": "choice"}})


def test_every_column_type_with_nulls_is_valid_arrow() -> None:
    """Arrays laid out from raw buffers pass Arrow's full validation, nulls included."""
    columns = {
        t: {"type": t, "null_fraction": 0.25, **({"options": ["x", "y"]} if t == "choice" else {})}
        for t in ALL_TYPES
    }
    params = SyntheticParams(rows=BLOCK_ROWS + 1001, seed=5, columns=columns)
    batches = list(generate(params))
    assert [b.num_rows for b in batches] == [BLOCK_ROWS, 1001]
    for batch in batches:
        batch.validate(full=True)
        for name in ALL_TYPES:
            nulls = batch.column(name).null_count
            assert 0.2 * batch.num_rows < nulls < 0.3 * batch.num_rows, name
    empty = generate_block(params, 0, 0)
    empty.validate(full=True)
    assert empty.num_rows == 0 and empty.num_columns == len(ALL_TYPES)
    flags = batches[1].column("bool").drop_null().to_pylist()
    assert 0.4 < sum(flags) / len(flags) < 0.6


def test_uuids_are_distinct_version_4() -> None:
    """Every UUID parses as an RFC 4122 version-4 UUID printed canonically, none repeated."""
    params = SyntheticParams(rows=20_000, seed=2, columns={"id": "uuid"})
    values = next(generate(params)).column("id").to_pylist()
    parsed = [uuid.UUID(v) for v in values]
    assert [str(u) for u in parsed] == values
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(values)) == len(values)


def test_emails_names_and_notes_look_real() -> None:
    """E-mails are ASCII first.last.N@domain, names two words, and notes carry nasty values."""
    params = SyntheticParams(rows=20_000, seed=4)
    batch = next(generate(params))
    email = re.compile(r"[a-z]+\.[a-z]+\.[1-9][0-9]{0,2}@(example\.(com|org|net)|mail\.test)")
    emails = batch.column("customer_email").to_pylist()
    assert all(email.fullmatch(e) for e in emails)
    assert len(set(emails)) > 0.99 * len(emails)  # millions of possible addresses
    assert all(len(n.split(" ")) >= 2 for n in batch.column("customer_name").to_pylist())
    notes = "".join(batch.column("note").drop_null().to_pylist())
    for nasty in ['"', ",", "\n", "\t", "ü", "注"]:
        assert nasty in notes


def test_columns_keep_their_values_when_renamed_or_appended() -> None:
    """A column's values depend on its position and spec, not its name or later columns."""
    base = SyntheticParams(rows=1000, seed=9, columns={"a": "email", "b": "int"})
    renamed = SyntheticParams(
        rows=1000, seed=9, columns={"mail": "email", "b": "int", "extra": "uuid"}
    )
    first, second = next(generate(base)), next(generate(renamed))
    assert first.column("a").equals(second.column("mail"))
    assert first.column("b").equals(second.column("b"))


def test_notes_with_nasty_values_read_back_from_csv() -> None:
    """Notes with quotes, commas, newlines and tabs survive a CSV round trip unchanged."""
    params = SyntheticParams(rows=5000, seed=6, columns={"id": "sequence", "note": "text"})
    data, _ = write(params, "csv", "none")
    table = pacsv.read_csv(io.BytesIO(data))
    source = pa.Table.from_batches(list(generate(params)))
    assert table.column("note").to_pylist() == source.column("note").to_pylist()
