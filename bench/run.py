"""`python -m bench.run [--quick] [--only N,N]`: run the benchmarks, print one table of
figures and ratios, and write them as JSON to `bench/results/`."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import case_live, case_postgres, case_queue, case_s3, case_scale, case_synthetic
from bench.harness import PG_URL, Result

CASES = {
    "postgres": (case_postgres.run, {"1", "2", "3", "4"}),
    "queue": (case_queue.run, {"5"}),
    "live": (case_live.run, {"6", "7"}),
    "synthetic": (case_synthetic.run, {"8"}),
    "s3": (case_s3.run, {"9"}),
    "scale": (case_scale.run, {"10"}),
}
RESULTS = Path(__file__).parent / "results"


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.3g}"


def table(results: list[Result]) -> str:
    header = ["case", "metric", "exportd", "reference", "ratio", "unit", "goal", "met"]
    rows = [
        [
            r.case,
            r.metric,
            fmt(r.exportd),
            f"{fmt(r.reference)} ({r.reference_name})" if r.reference is not None else "-",
            f"{r.ratio:.2f}" if r.ratio is not None else "-",
            r.unit,
            r.goal or "-",
            {True: "yes", False: "NO", None: "-"}[r.met],
        ]
        for r in results
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--only", default="", help="case numbers, e.g. 1,5")
    args = parser.parse_args()
    wanted = {n.strip() for n in args.only.split(",") if n.strip()}
    results: list[Result] = []
    failed: list[str] = []
    started = time.monotonic()
    for name, (run, numbers) in CASES.items():
        if wanted and not wanted & numbers:
            continue
        print(f"running {name} …", file=sys.stderr, flush=True)
        try:
            found = run(args.quick, PG_URL)
        except Exception as exc:  # one broken case must not lose the others' figures
            print(f"{name} failed: {exc!r}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        results += [r for r in found if not wanted or r.case.split()[0] in wanted]
        print(table(results), file=sys.stderr, flush=True)
    print(table(results))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{stamp}-{'quick' if args.quick else 'full'}.json"
    path.write_text(
        json.dumps(
            {
                "when": stamp,
                "quick": args.quick,
                "seconds": round(time.monotonic() - started, 1),
                "machine": {
                    "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count(),
                },
                "results": [r.as_dict() for r in results],
                "failed": failed,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwritten to {path}", file=sys.stderr)
    if failed:
        print(f"cases that failed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
