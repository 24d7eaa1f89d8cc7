"""`python -m chaos.run [--small] [--store postgres|sqlite|all] [--seed N] [--keep]`:
chaos rounds against real exportd processes; one table of figures, JSON in chaos/results/,
exit status 1 when any invariant is broken in any shape.

A round: its own PostgreSQL (or one SQLite file shared by every process), the artifact
folder on a tmpfs of its own, `exportd migrate`, a token per owner, `exportd serve
--no-workers` and N `exportd worker`; jobs created over HTTP while faults are injected;
a drain (bounded); every process stopped; then `chaos.check` over the store, the
transition history, the execution log and the artifact folder."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from chaos import report
from chaos.check import RoundRecord, check
from chaos.cluster import ArtifactVolume, PostgresCluster
from chaos.exporters import EXEC_LOG_ENV
from chaos.faults import Injector, plan
from chaos.fleet import Fleet, exportd_env
from chaos.history import (
    count_terminal,
    holding_pids,
    install_recorder,
    open_engine,
    read_executions,
    read_snapshot,
)
from chaos.watch import KeyWatcher
from chaos.workload import Feeder, make_requests

LEASE_SECONDS = 3.0
SETTINGS = {
    "lease_seconds": str(LEASE_SECONDS),
    "owner_running_cap": "1",
    "retry_base_seconds": "0.2",
    "retry_cap_seconds": "1",
    "poll_interval": "0.25",
    "grace_seconds": "0.5",
    "progress_interval": "0.1",
    "max_active_per_owner": "100000",
    "secret_key": "chaos-round-secret-key-not-for-production",
}


@dataclass(frozen=True)
class Size:
    jobs: int
    owners: int
    workers: int
    concurrency: int
    faults: dict[str, int]
    rate: float
    """Jobs created per second, after the burst."""
    burst: float = 0.4
    """The share of the jobs created at once, at the start."""
    volume_mb: int = 256
    drain_timeout: float = 120.0
    stop_seconds: float = 2 * LEASE_SECONDS + 1
    full_seconds: float = 3.0


SIZES = {
    ("small", "postgres"): Size(
        120, 5, 2, 8, {"sigkill": 6, "sigstop": 1, "sigterm": 1, "pg_restart": 1, "disk_full": 1},
        rate=4,
    ),
    ("small", "sqlite"): Size(80, 4, 2, 4, {"sigkill": 2, "sigterm": 1, "disk_full": 1}, rate=3),
    ("full", "postgres"): Size(
        1000, 6, 3, 8,
        {"sigkill": 100, "sigstop": 4, "sigterm": 10, "pg_restart": 2, "disk_full": 2},
        rate=3, volume_mb=384, drain_timeout=300,
    ),
    ("full", "sqlite"): Size(
        1000, 6, 3, 4, {"sigkill": 100, "sigstop": 4, "sigterm": 10, "disk_full": 2},
        rate=3, volume_mb=384, drain_timeout=300,
    ),
}  # fmt: skip


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Progress:
    """What the injector asks between faults: the share of jobs finished, and whether
    the round has drained (everything asked for was answered and is terminal)."""

    engine: Engine
    feeder: Feeder
    total: int
    last: tuple[int, int] = (0, 0)
    log_every: float = 10.0
    _logged: float = field(default_factory=time.monotonic)

    def __call__(self) -> tuple[float, bool]:
        with contextlib.suppress(Exception):  # the database may be restarting
            self.last = count_terminal(self.engine)
        terminal, stored = self.last
        if time.monotonic() - self._logged >= self.log_every:
            self._logged = time.monotonic()
            say(f"  {terminal}/{self.total} jobs finished, {stored} stored")
        drained = self.feeder.done() and terminal == stored
        return terminal / self.total, drained


def wait_drained(engine: Engine, timeout: float) -> tuple[bool, float]:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        try:
            terminal, stored = count_terminal(engine)
        except Exception:
            terminal, stored = -1, 0
        if terminal == stored:
            return True, time.monotonic() - began
        time.sleep(0.5)
    return False, time.monotonic() - began


def fault_counts(planned: dict[str, int], faults: list) -> dict[str, str]:
    injected = Counter(f.kind for f in faults if f.skipped is None)
    return {kind: f"{injected[kind]}/{count}" for kind, count in planned.items()}


def keep_logs(workdir: Path, stamp: str, store: str, engine: Engine) -> Path:
    """Copy the processes' logs, the execution log and the transition history aside."""
    target = report.RESULTS / f"{stamp}-{store}-logs"
    shutil.copytree(workdir / "logs", target, dirs_exist_ok=True)
    if (workdir / "executions.log").exists():
        shutil.copy(workdir / "executions.log", target)
    snapshot = read_snapshot(engine)
    with open(target / "transitions.jsonl", "w") as out:
        for t in snapshot.transitions:
            row = {k: v for k, v in t.row.items() if k not in ("params", "options")}
            out.write(json.dumps({**asdict(t), "row": row}, default=str) + "\n")
    return target


class Round:
    def __init__(
        self, store: str, size_name: str, size: Size, seed: int, keep: bool, save_logs: bool = True
    ) -> None:
        self.save_logs = save_logs
        """Copy the logs to chaos/results/ when an invariant broke (or with `keep`)."""
        self.store = store
        self.size_name = size_name
        self.size = size
        self.seed = seed
        self.keep = keep
        self.workdir = Path(tempfile.mkdtemp(prefix=f"exportd-chaos-{store}-"))

    def run(self) -> dict[str, Any]:
        began = time.monotonic()
        with ExitStack() as stack:
            if not self.keep:
                stack.callback(shutil.rmtree, self.workdir, True)
            cluster, url = self._database(stack)
            volume = ArtifactVolume(self.workdir, self.size.volume_mb)
            stack.callback(volume.unmount)
            volume.mount()
            fleet = self._fleet(url, volume)
            stack.callback(fleet.stop_all)
            engine = open_engine(url)
            stack.callback(engine.dispose)
            result = self._round(fleet, cluster, volume, engine)
            result["seconds"] = round(time.monotonic() - began, 1)
            result["counts"]["round seconds"] = result["seconds"]
            return result

    def _database(self, stack: ExitStack) -> tuple[PostgresCluster | None, str]:
        if self.store == "sqlite":
            return None, f"sqlite:///{self.workdir / 'home' / 'exportd.db'}"
        cluster = PostgresCluster()
        stack.callback(cluster.destroy)
        cluster.start()
        return cluster, cluster.url

    def _fleet(self, url: str, volume: ArtifactVolume) -> Fleet:
        (self.workdir / "tmp").mkdir()
        settings = {
            **SETTINGS,
            "home": str(self.workdir / "home"),
            "database_url": url,
            "storage_url": volume.artifacts.as_uri(),
            "concurrency": str(self.size.concurrency),
        }
        extra = {EXEC_LOG_ENV: str(self.workdir / "executions.log"),
                 "TMPDIR": str(self.workdir / "tmp")}  # fmt: skip
        return Fleet(self.workdir, exportd_env(settings, extra), self.size.workers)

    def _round(
        self, fleet: Fleet, cluster: PostgresCluster | None, volume: ArtifactVolume, engine: Engine
    ) -> dict[str, Any]:
        size = self.size
        say(f"{self.store}: {size.jobs} jobs, {size.owners} owners at cap 1, "
            f"{size.workers} workers x {size.concurrency}; faults {size.faults}")  # fmt: skip
        began = time.monotonic()
        fleet.migrate()
        install_recorder(engine)
        owners = [f"owner{i}" for i in range(size.owners)]
        tokens = fleet.tokens(owners)
        fleet.start_serve()
        fleet.start_workers()
        watcher = KeyWatcher(volume.artifacts)
        watcher.start()
        requests = make_requests(size.jobs, owners, self.seed)
        feeder = Feeder(fleet.url, tokens, requests, size.rate, burst=int(size.jobs * size.burst))
        injector = Injector(
            plan(size.faults, self.seed), fleet, cluster, volume,
            Progress(engine, feeder, size.jobs),
            lambda: holding_pids(engine, fleet.pids()),
            stop_seconds=size.stop_seconds, full_seconds=size.full_seconds, seed=self.seed,
        )  # fmt: skip
        faults_began = time.monotonic()
        setup_seconds = faults_began - began
        feeder.start()
        injector.start()
        feeder.join()
        injector.join()
        faults_seconds = time.monotonic() - faults_began
        say(f"  faults done after {faults_seconds:.0f} s; draining")
        drained, drain_seconds = wait_drained(engine, size.drain_timeout)
        fleet.stop_all()
        watcher.stop()
        record = RoundRecord(
            requests=requests,
            created=feeder.created,
            not_created=feeder.not_created,
            rejected=feeder.rejected,
            snapshot=read_snapshot(engine),
            executions=read_executions(self.workdir / "executions.log"),
            faults=injector.faults,
            pids=fleet.pids(),
            artifacts_root=volume.artifacts,
            watcher=watcher,
        )
        say("  checking")
        check_began = time.monotonic()
        verdict = check(record)
        counts = verdict.counts
        counts["faults injected/planned"] = fault_counts(size.faults, injector.faults)
        skipped = Counter(f"{f.kind}: {f.skipped}" for f in injector.faults if f.skipped)
        counts["faults skipped"] = dict(skipped) or 0
        counts["drained"] = "yes" if drained else f"no, after {drain_seconds:.0f} s"
        counts["seconds to set up (migrate, tokens, processes)"] = round(setup_seconds, 1)
        counts["seconds with faults"] = round(faults_seconds, 1)
        counts["seconds to drain after"] = round(drain_seconds, 1)
        counts["seconds to check"] = round(time.monotonic() - check_began, 1)
        counts["worker processes started"] = len(fleet.history)
        counts["create retries (HTTP)"] = feeder.retries
        counts["teardown kills"] = len(fleet.teardown_kills)
        stored = sum(a.size for rows in record.snapshot.artifacts.values() for a in rows)
        counts["artifact MiB stored"] = round(stored / 2**20, 1)
        counts["worker temp files left"] = sum(1 for _ in (self.workdir / "tmp").rglob("*"))
        counts.update(
            report.log_stats(
                [w.log for w in fleet.history],
                fleet.logs / "serve.log",
                cluster.log if cluster is not None else None,
            )
        )
        result: dict[str, Any] = {
            "store": self.store,
            "size": self.size_name,
            "seed": self.seed,
            "config": {**asdict(size), "settings": SETTINGS},
            "passed": verdict.passed,
            "figures": verdict.figures,
            "counts": counts,
            "details": verdict.details,
            "faults": [f.as_dict() for f in injector.faults],
            "artifact volume": {"mounted": volume.mounted, "skip_reason": volume.skip_reason},
        }
        if self.keep or (self.save_logs and not verdict.passed):
            stamp = time.strftime("%Y%m%dT%H%M%S")
            result["logs"] = str(keep_logs(self.workdir, stamp, self.store, engine))
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="the small sizes (CI)")
    parser.add_argument("--store", choices=["postgres", "sqlite", "all"], default="postgres")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folders and logs")
    args = parser.parse_args()
    size_name = "small" if args.small else "full"
    stores = ["postgres", "sqlite"] if args.store == "all" else [args.store]
    results = {
        store: Round(store, size_name, SIZES[(size_name, store)], args.seed, args.keep).run()
        for store in stores
    }
    print(report.table(results))
    path = report.save({"shapes": results}, size_name)
    say(f"\nwritten to {path}")
    for store, result in results.items():
        for invariant, examples in result["details"].items():
            say(f"\n{store} · {invariant}:")
            for example in examples[:8]:
                say(f"  {example}")
        if "logs" in result:
            say(f"{store}: logs kept in {result['logs']}")
    return 0 if all(r["passed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
