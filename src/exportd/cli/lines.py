"""The words of a progress line, and which of them fit a width: status and percent
always; then the ETA and the current step (or, for a job waiting to be retried,
"attempt 2/3, retrying in 4 s: <last error>"); the bar, the amount done and the rate
only where there is room."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exportd.client import Job

BAR_MIN, BAR_MAX = 10, 30
NOTE_MIN = 12
DROPPED_FIRST = ("rate", "amount", "bar")
"""What goes when a line is too long, in this order, before the note is shortened."""
ORDER = ("status", "bar", "percent", "amount", "rate", "eta", "note")


def amount(value: float, unit: str) -> str:
    """`1,234` (rows, items), `61.8 kB` (bytes)."""
    if unit != "bytes":
        return f"{value:,.0f}"
    for suffix in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or suffix == "TB":
            return f"{value:,.0f} {suffix}" if suffix == "B" else f"{value:,.1f} {suffix}"
        value /= 1000
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    """`0.4 s`, `12 s`, `3m05s`, `2h07m`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass(frozen=True)
class Line:
    """One progress line's parts; empty ones are left out."""

    status: str
    percent: float | None = None
    amount: str = ""
    rate: str = ""
    eta: str = ""
    note: str = ""

    def text(self, key: str) -> str:
        if key == "percent":
            return f"{self.percent:5.1f}%" if self.percent is not None else ""
        if key == "status":
            return f"{self.status:<9}"
        return str(getattr(self, key))


@dataclass(frozen=True)
class Layout:
    """The line cut to a width: the text before the bar, the bar's width (0: no bar) and
    the text after it."""

    before: str
    bar: int
    after: str

    @property
    def width(self) -> int:
        return len(self.before) + self.bar + len(self.after) + (2 if self.bar else 0)


def fit(line: Line, width: int) -> Layout:
    """The parts of `line` that fit in `width - 1` columns (the last one is left free:
    a terminal wraps there), dropping or shortening the least useful first."""
    room = max(width - 1, 1)
    parts = {key: line.text(key) for key in ORDER if key != "bar" and line.text(key)}
    keys = [k for k in ORDER if k in parts or (k == "bar" and line.percent is not None)]
    for victim in DROPPED_FIRST:
        if _needed(keys, parts) <= room:
            break
        if victim in keys:
            keys.remove(victim)
    excess = _needed(keys, parts) - room
    if excess > 0 and "note" in keys:
        if len(parts["note"]) - excess >= NOTE_MIN:
            parts["note"] = parts["note"][: len(parts["note"]) - excess - 1] + "…"
        else:
            keys.remove("note")
    if _needed(keys, parts) > room and "eta" in keys:
        keys.remove("eta")
    bar = min(BAR_MAX, BAR_MIN + room - _needed(keys, parts)) if "bar" in keys else 0
    before = parts["status"] if "bar" in keys else ""
    rest = [parts[k] for k in keys if k != "bar" and not (bar and k == "status")]
    after = " ".join(rest)
    if not bar:
        return Layout("", 0, after[:room])
    return Layout(before, bar, after)


def _needed(keys: list[str], parts: dict[str, str]) -> int:
    widths = [BAR_MIN if key == "bar" else len(parts[key]) for key in keys]
    return sum(widths) + len(widths) - 1


def job_line(job: Job, *, now: datetime | None = None, elapsed: float | None = None) -> Line:
    """The line for a snapshot of a job; `elapsed` (seconds) ends a finished one."""
    p = job.progress
    unit = "" if p.unit == "bytes" else f" {p.unit}"
    done = amount(p.done, p.unit)
    total = f"/{amount(p.total, p.unit)}" if p.total is not None else ""
    rate = f"{amount(p.rate, p.unit)}{unit}/s" if p.rate else ""
    running = job.status == "running"
    eta = f"ETA {duration(p.eta_seconds)}" if p.eta_seconds is not None and running else ""
    note = retry_note(job, now or datetime.now(UTC)) or (p.message or "")
    if job.is_terminal and elapsed is not None:
        note = f"in {duration(elapsed)}"
    return Line(job.status, p.percent, f"{done}{total}{unit}", rate, eta, note)


def retry_note(job: Job, now: datetime) -> str | None:
    """`attempt 2/3, retrying in 4 s: <last error>` for a job waiting to be retried."""
    if job.status != "queued" or job.attempt < 1 or job.next_attempt_at is None:
        return None
    wait = max((job.next_attempt_at - now).total_seconds(), 0.0)
    error = f": {job.error.code}: {job.error.message}" if job.error else ""
    return f"attempt {job.attempt + 1}/{job.max_attempts}, retrying in {wait:.0f} s{error}"


def transfer_line(done: int, total: int | None, *, elapsed: float | None = None) -> Line:
    """The line for bytes being saved; `elapsed` ends it."""
    percent = 100.0 * done / total if total else None
    size = amount(done, "bytes") + (f"/{amount(total, 'bytes')}" if total else "")
    note = f"in {duration(elapsed)}" if elapsed is not None else ""
    return Line("saving" if elapsed is None else "saved", percent, size, note=note)


def plain(line: Line) -> str:
    """The whole line as text, for logs and pipes (no bar)."""
    return " ".join(t for k in ORDER if k != "bar" and (t := line.text(k).strip()))
