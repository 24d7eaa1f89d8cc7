"""The round's figures as one table (a column per shape) and as JSON in chaos/results/,
plus what the processes' logs say: deadlocks (the workers' stderr, and PostgreSQL's own
log) and error records."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.check import INVARIANTS

RESULTS = Path(__file__).parent / "results"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\w+) ")
DEADLOCK = re.compile(r"deadlock ?detected", re.IGNORECASE)


def _records(text: str) -> list[tuple[str, str]]:
    """A log split into (level, record) at the lines that start a logging record."""
    records: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        found = RECORD_START.match(line)
        if found or not records:
            records.append((found.group(1) if found else "?", [line]))
        else:
            records[-1][1].append(line)
    return [(level, "\n".join(lines)) for level, lines in records]


def log_stats(worker_logs: list[Path], serve_log: Path, pg_log: Path | None) -> dict[str, int]:
    """Deadlocks and errors, counted per logging record (a traceback is one record)."""
    stats: Counter[str] = Counter()
    for who in ("worker", "serve"):
        for what in ("deadlocks", "error records", "tracebacks"):
            stats[f"{what} in {who} logs"] = 0
    for path, who in [(p, "worker") for p in worker_logs] + [(serve_log, "serve")]:
        if not path.exists():
            continue
        for level, record in _records(path.read_text(errors="replace")):
            if DEADLOCK.search(record):
                stats[f"deadlocks in {who} logs"] += 1
            if level in ("ERROR", "CRITICAL"):
                stats[f"error records in {who} logs"] += 1
            elif level == "WARNING":
                stats[f"warning records in {who} logs"] += 1
            if "Traceback" in record:
                stats[f"tracebacks in {who} logs"] += 1
    if pg_log is not None and pg_log.exists():
        text = pg_log.read_text(errors="replace")
        stats["deadlocks in the PostgreSQL log"] = len(
            re.findall(r"ERROR:\s+deadlock detected", text)
        )
    return dict(stats)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def table(shapes: dict[str, dict[str, Any]]) -> str:
    """Rows: the invariants (with `!!` when not 0), then the counts; a column per shape."""
    names = list(shapes)
    rows: list[list[str]] = []
    for invariant in INVARIANTS:
        values = [shapes[n]["figures"][invariant] for n in names]
        mark = "" if not any(values) else "  !!"
        rows.append([f"{invariant}{mark}", *(_cell(v) for v in values)])
    rows.append(["", *("" for _ in names)])
    keys: list[str] = []
    for name in names:
        keys += [k for k in shapes[name]["counts"] if k not in keys]
    for key in keys:
        rows.append([key, *(_cell(shapes[n]["counts"].get(key, "-")) for n in names)])
    header = ["invariant (must be 0) / count", *names]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def save(document: dict[str, Any], size: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{size}.json"
    path.write_text(json.dumps({"when": stamp, "size": size, **document}, indent=2, default=str))
    return path
