"""The progress line's words and what of them fits a width (`exportd.cli.lines`), and
the CLI's names of formats and compressions (kept apart so `--help` loads no writer)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exportd.cli.export import COMPRESSION_NAMES, FORMAT_NAMES
from exportd.cli.lines import Line, duration, fit, job_line, plain, retry_note
from exportd.client import Job
from exportd.formats import COMPRESSIONS, FORMATS

RUNNING = Line("running", 42.8, "1,710/4,000 rows", "169 rows/s", "ETA 14 s", "batch 172 of 400")
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def shown(width: int, line: Line = RUNNING) -> str:
    layout = fit(line, width)
    bar = "#" * layout.bar
    return " ".join(part for part in (layout.before, bar, layout.after) if part)


@pytest.mark.parametrize("width", [200, 100, 80, 60, 50, 40, 30, 20, 12])
def test_a_line_never_takes_the_last_column(width: int) -> None:
    """Whatever the width, the line leaves its last column free."""
    assert len(shown(width)) <= width - 1
    assert fit(RUNNING, width).width == len(shown(width))


def test_80_columns_keep_bar_eta_and_step_and_drop_the_rate() -> None:
    """At 80: status, bar, percent, amount, ETA and step; the rate goes first."""
    text = shown(80)
    assert text.startswith("running   #")
    assert text.endswith("42.8% 1,710/4,000 rows ETA 14 s batch 172 of 400")
    assert "rows/s" not in text
    assert "rows/s" in shown(120)


def test_40_columns_keep_percent_and_eta_and_shorten_the_step() -> None:
    """At 40: no bar or amount; the step is cut with an ellipsis, the ETA kept."""
    assert shown(40) == "running    42.8% ETA 14 s batch 172 of…"
    assert shown(20) == "running    42.8%"


def test_a_waiting_retry_says_attempt_wait_and_error() -> None:
    """A queued job after a failed attempt: the next attempt, the wait, the last error."""
    job = Job.from_dict(
        {
            "id": "j",
            "status": "queued",
            "exporter": "x",
            "attempt": 1,
            "max_attempts": 3,
            "error": {"code": "upstream_unavailable", "message": "503", "retryable": True},
            "next_attempt_at": (NOW + timedelta(seconds=4.2)).isoformat(),
        }
    )
    assert retry_note(job, NOW) == "attempt 2/3, retrying in 4 s: upstream_unavailable: 503"
    assert job_line(job, now=NOW).note == retry_note(job, NOW)


def test_a_finished_job_ends_with_its_elapsed_time() -> None:
    """The last line of a completed job says how long it took."""
    job = Job.from_dict({"id": "j", "status": "completed", "exporter": "x"})
    assert plain(job_line(job, elapsed=83)) == "completed 0 rows in 1m23s"
    assert [duration(s) for s in (0.42, 12.4, 3725)] == ["0.4 s", "12 s", "1h02m"]


def test_the_cli_names_every_format_and_compression() -> None:
    """`--format` and `--compression` choices are exactly what the writers know."""
    assert tuple(FORMATS) == FORMAT_NAMES
    assert tuple(COMPRESSIONS) == COMPRESSION_NAMES
