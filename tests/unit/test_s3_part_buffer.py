"""`PartBuffer`, the part an S3 upload is filling: never more than a part, handed over
without a copy, and its memory reused for the part after next (no I/O)."""

from __future__ import annotations

from exportd.storage.s3_partial import PartBuffer


def test_a_part_is_filled_to_its_size_and_no_further() -> None:
    """`fill` takes only what fits; the rest waits for the next part."""
    buffer = PartBuffer(10)
    assert buffer.fill(memoryview(b"abcdefgh")) == 8
    assert buffer.fill(memoryview(b"ijklmn")) == 2
    assert buffer.full
    assert buffer.take_part() == bytearray(b"abcdefghij")
    assert (buffer.size, buffer.full) == (0, False)


def test_a_sent_parts_buffer_holds_the_next_part() -> None:
    """Once recycled, the buffer of a stored part takes the part after the one being
    sent, in place: two parts' worth of memory for an upload of any length."""
    buffer = PartBuffer(4)
    buffer.fill(memoryview(b"1234"))
    first = buffer.take_part()
    buffer.fill(memoryview(b"5678"))
    buffer.recycle(first)  # stored meanwhile
    second = buffer.take_part()
    buffer.fill(memoryview(b"9a"))
    buffer.fill(memoryview(b"bc"))
    third = buffer.take_part()
    assert third is first and third == bytearray(b"9abc")
    assert second == bytearray(b"5678")


def test_the_last_part_is_a_copy_and_frees_the_memory() -> None:
    """`take` returns what a short last part holds and keeps no buffer or spare."""
    buffer = PartBuffer(4)
    buffer.fill(memoryview(b"1234"))
    buffer.recycle(buffer.take_part())
    buffer.fill(memoryview(b"xy"))
    assert buffer.take() == b"xy"
    assert (buffer.size, buffer.in_memory) == (0, 0)
