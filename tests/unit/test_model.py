"""Job ids, progress arithmetic and configuration URLs."""

from __future__ import annotations

import time
import uuid

import pytest

from exportd.config import normalize_database_url
from exportd.errors import ConfigurationError
from exportd.jobs import Progress, new_id


def test_ids_are_uuid7_and_time_ordered() -> None:
    """Ids are version-7 UUIDs that sort by creation time."""
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert uuid.UUID(first).version == 7
    assert first < second


def test_ids_made_within_one_millisecond_still_increase() -> None:
    """Ids made in a burst (many per millisecond) are strictly increasing and unique, so
    listing newest first by id matches creation order."""
    ids = [new_id() for _ in range(20_000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(i).version for i in ids} == {7}


def test_id_after_all_ones_random_bits_moves_the_time_bits() -> None:
    """When the random bits cannot grow, the next id carries into the sub-millisecond
    time bits and is still a valid UUIDv7."""
    from exportd.jobs.model import _next_after

    full = uuid.UUID(new_id()).int | ((1 << 62) - 1)
    after = uuid.UUID(int=_next_after(full))
    assert after.int > full
    assert (after.version, after.variant) == (7, uuid.RFC_4122)


def test_progress_percent() -> None:
    """Percent is derived from done/total and unknown without a total."""
    assert Progress(25, 200).percent == 12.5
    assert Progress(5, None).percent is None
    assert Progress(300, 200).percent == 100.0


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_database_urls_as_users_write_them(given: str, expected: str) -> None:
    """Users write plain URLs; exportd picks its own driver."""
    assert normalize_database_url(given) == expected


@pytest.mark.parametrize("bad", ["mysql://h/db", "not a url"])
def test_unsupported_database_urls_are_refused(bad: str) -> None:
    """Anything but PostgreSQL or SQLite is a clear configuration error."""
    with pytest.raises(ConfigurationError):
        normalize_database_url(bad)
