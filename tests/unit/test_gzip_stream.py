"""gzip output compresses on a thread of its own past its first MiB: the file is still
standard gzip, identical run to run, and the sink's errors reach the writer; nothing is
left running when a stream ends, fails or is discarded."""

from __future__ import annotations

import gzip
import random
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from exportd.errors import PermanentError
from exportd.formats.sink import THREAD_AFTER_BYTES, ByteBudget, HashingSink, Stream


class Collect:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.chunks.append(data)
        return len(data)


def rows(blocks: int, block: int = 256 * 1024) -> list[bytes]:
    line = b"1042,2026-12-04 10:00:00,customer 17,Some Street 5,42.50,EUR\n"
    return [(f"{i}:".encode() + line * (block // len(line)))[:block] for i in range(blocks)]


def gzip_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "exportd-gzip"]


def compressed(blocks: list[bytes]) -> tuple[bytes, HashingSink, bool]:
    target = Collect()
    sink = HashingSink(target)
    stream = Stream(sink, "gzip")
    threaded = False
    for data in blocks:
        stream.write(data)
        threaded = threaded or bool(gzip_threads())
    stream.close()
    return b"".join(target.chunks), sink, threaded


def test_a_large_gzip_stream_is_standard_gzip_written_from_a_thread(tmp_path: Path) -> None:
    blocks = rows(4 * THREAD_AFTER_BYTES // (256 * 1024))
    data, sink, threaded = compressed(blocks)
    assert threaded  # the thread really compressed part of it
    assert gzip_threads() == []
    assert gzip.decompress(data) == b"".join(blocks)
    assert sink.size == len(data)
    again, _, _ = compressed(blocks)
    assert again == data  # deterministic
    if shutil.which("gzip"):
        path = tmp_path / "f.csv.gz"
        path.write_bytes(data)
        out = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True)
        assert out.stdout == b"".join(blocks)


def test_a_small_gzip_stream_never_starts_a_thread() -> None:
    data, _, threaded = compressed(rows(2, 1000))
    assert not threaded
    assert gzip.decompress(data) == b"".join(rows(2, 1000))


def test_a_sink_error_on_the_thread_reaches_the_writer() -> None:
    """The output cap is crossed by bytes the thread compresses: a later write (or the
    close) raises the cap's error, and the thread is gone."""
    noise = random.Random(7)
    blocks = [noise.randbytes(256 * 1024) for _ in range(32)]  # incompressible
    budget = ByteBudget(2 * THREAD_AFTER_BYTES)  # crossed after the thread starts
    stream = Stream(HashingSink(Collect(), budget), "gzip")
    written = 0

    def write_all() -> None:
        nonlocal written
        for data in blocks:
            stream.write(data)
            written += len(data)
        stream.close()

    with pytest.raises(PermanentError) as caught:
        write_all()
    assert written > THREAD_AFTER_BYTES  # the error came from the thread's side
    assert caught.value.code == "too_large"
    stream.abort()
    assert gzip_threads() == []


def test_an_aborted_stream_stops_its_thread_and_ignores_late_bytes() -> None:
    target = Collect()
    stream = Stream(HashingSink(target), "gzip")
    for data in rows(8):
        stream.write(data)
    assert gzip_threads()
    stream.abort()
    assert gzip_threads() == []
    stream.write(b"late")  # a writer's own cleanup, after the discard
    assert gzip_threads() == []
