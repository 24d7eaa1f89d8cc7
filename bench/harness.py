"""Shared pieces of the benchmarks: results, timing, databases and server processes."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "EXPORTD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Result:
    """One row of the table: exportd's figure, the reference's, and their ratio."""

    case: str
    metric: str
    exportd: float
    reference: float | None = None
    reference_name: str = ""
    unit: str = ""
    goal: str = ""
    met: bool | None = None
    notes: str = ""
    samples: dict[str, Any] = field(default_factory=dict)
    paired_ratio: float | None = None
    """For side-by-side timings: the median of the per-run ratios, which is what the
    table shows and the goal is judged on (not the ratio of the two medians)."""

    @property
    def ratio(self) -> float | None:
        if self.paired_ratio is not None:
            return self.paired_ratio
        if self.reference in (None, 0):
            return None
        assert self.reference is not None
        return self.exportd / self.reference

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(
    a: Callable[[], float], b: Callable[[], float], repeats: int
) -> tuple[list[float], list[float], float]:
    """Run A then B `repeats` times; returns both series and the median of the A/B ratios."""
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(a())
        times_b.append(b())
    ratios = [x / y for x, y in zip(times_a, times_b, strict=True)]
    return times_a, times_b, median(ratios)


def timing_result(
    case: str,
    metric: str,
    ours: list[float],
    theirs: list[float],
    ratio: float,
    reference_name: str,
    limit: float | None,
) -> Result:
    """The row of a side-by-side timing: medians of both series, judged on the median
    of the per-run ratios (`<= limit`; no goal when `limit` is None)."""
    return Result(
        case,
        f"{metric}, seconds (ratio = median of per-run ratios)",
        sorted(ours)[len(ours) // 2],
        sorted(theirs)[len(theirs) // 2],
        reference_name,
        "s",
        "report" if limit is None else f"<= {limit:g}",
        None if limit is None else ratio <= limit,
        notes=f"median ratio {ratio:.3f}",
        samples={"exportd": ours, "reference": theirs, "ratio": ratio},
        paired_ratio=ratio,
    )


def pg_url_for(database: str) -> str:
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{database}"


def _own(name: str) -> str:
    """`name` for this benchmark process: two runs at once must not drop each other's."""
    return f"{name}_{os.getpid()}"


def fresh_database(name: str) -> str:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_own(name)}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{_own(name)}"')
    return pg_url_for(_own(name))


def drop_database(name: str) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{_own(name)}" WITH (FORCE)')


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="exportd-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def exportd_env(home: Path, database_url: str | None = None, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env["EXPORTD_HOME"] = str(home)
    # The memory case writes 10M-row files: above the default 1 GiB quota per owner.
    env["EXPORTD_OWNER_STORAGE_QUOTA"] = str(1 << 40)
    if database_url:
        env["EXPORTD_DATABASE_URL"] = database_url
    for key, value in settings.items():
        env[f"EXPORTD_{key.upper()}"] = str(value)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def exportd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "exportd", *args, "--app", "bench.exporters"]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`exportd serve` as a subprocess, with an owner token."""

    def __init__(self, env: dict[str, str], *, workers: bool = True, concurrency: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "EXPORTD_PORT": str(self.port), "EXPORTD_CONCURRENCY": str(concurrency)}
        args = exportd_cmd("serve", *([] if workers else ["--no-workers"]))
        self.proc = subprocess.Popen(
            args, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("exportd serve did not start")
        out = subprocess.run(
            [sys.executable, "-m", "exportd", "token", "create", "--owner", "bench", "--admin"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        self.token = out.stdout.strip()
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=600)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_completed(client: httpx.Client, job_id: str, timeout: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = client.get(f"/v1/exports/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            if job["status"] != "completed":
                raise RuntimeError(f"job {job_id} {job['status']}: {job['error']}")
            return job
        time.sleep(0.02)
    raise TimeoutError(job_id)


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) so far, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")
