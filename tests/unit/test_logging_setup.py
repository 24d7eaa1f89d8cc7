"""`configure_logging` without processes: how each format renders a standard-library
record with bound job context, and which libraries are kept quiet."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import structlog

from exportd.jobs import Status
from exportd.observability import configure_logging, job_context
from exportd.observability.attempts import outcome
from exportd.observability.logs import QUIET, resolve_format


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream to log to; the logging set-up is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in QUIET}
    hooks = sys.excepthook, threading.excepthook
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)
    structlog.reset_defaults()


def a_job() -> SimpleNamespace:
    """What `job_context` reads of a claimed job."""
    return SimpleNamespace(
        id="01a2-job", attempt=2, owner="ann", exporter="synthetic", lease_owner="host:1:abcd"
    )


def test_json_lines_carry_the_bound_job_and_extra_fields(stream: io.StringIO) -> None:
    """Inside `job_context`, a plain `log.warning` becomes JSON with the five job keys,
    its `extra` fields, level, logger and a UTC timestamp; outside, none of them."""
    configure_logging("json", stream=stream)
    job = a_job()
    log = logging.getLogger("exportd.test")
    with job_context(job):  # type: ignore[arg-type]
        log.warning("job %s slow", "x", extra={"rows": 5})
    log.warning("after")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert inside["event"] == "job x slow" and inside["rows"] == 5
    assert (inside["level"], inside["logger"]) == ("warning", "exportd.test")
    assert inside["timestamp"].endswith("Z")
    assert [inside[k] for k in ("attempt", "owner", "exporter", "worker_id")] == [
        2,
        "ann",
        "synthetic",
        "host:1:abcd",
    ]
    assert inside["job_id"] == "01a2-job"
    assert "job_id" not in outside


def test_plain_lines_read_like_before_with_fields_after(stream: io.StringIO) -> None:
    """`plain`: `time LEVEL logger: message key=value`, values with spaces quoted, the
    traceback on the lines below."""
    configure_logging("plain", stream=stream)
    log = logging.getLogger("exportd.test")
    try:
        raise ValueError("bad")
    except ValueError:
        log.error("it broke", exc_info=True, extra={"why": "two words", "n": 3})
    first, *rest = stream.getvalue().splitlines()
    assert " ERROR exportd.test: it broke " in first
    assert first.endswith('why="two words" n=3')
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: bad"


def test_libraries_are_quiet_below_warning(stream: io.StringIO) -> None:
    """fontTools and WeasyPrint INFO lines are dropped; their warnings are not."""
    configure_logging("json", level="DEBUG", stream=stream)
    logging.getLogger("fontTools.subset").info("maxp pruned")
    logging.getLogger("weasyprint.progress").info("Step 1 - Fetching and parsing HTML")
    logging.getLogger("weasyprint").warning("unknown property")
    logging.getLogger("exportd.x").debug("kept")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert events == ["unknown property", "kept"]


def test_auto_is_plain_unless_on_a_terminal(stream: io.StringIO) -> None:
    """`auto` picks console on a terminal and plain otherwise; others are taken as is."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert resolve_format("auto", stream) == "plain"
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("json", Terminal()) == "json"
    with pytest.raises(ValueError, match="unknown log format"):
        configure_logging("xml", stream=stream)


def test_outcomes_name_how_an_attempt_ended() -> None:
    """A released job and a retried one are both queued again; the stop reason tells
    them apart; nothing stored is `lost`."""
    queued, done = SimpleNamespace(status=Status.QUEUED), SimpleNamespace(status=Status.COMPLETED)
    assert outcome(queued, "shutdown") == "released"  # type: ignore[arg-type]
    assert outcome(queued, None) == "retried"  # type: ignore[arg-type]
    assert outcome(done, None) == "completed"  # type: ignore[arg-type]
    assert outcome(None, "lease_lost") == "lost"
