"""Faults, the schedule they follow, and the record of each one injected.

Kinds, each recorded with its target and the interval during which it acted:
- `sigkill`: SIGKILL a random running worker, then start a new one in its slot;
- `sigstop`: SIGSTOP a worker for longer than the lease, then SIGCONT it (a zombie that
  wakes up and carries on as if nothing happened);
- `sigterm`: a graceful restart (SIGTERM, short grace, a new worker), so running jobs are
  *released*;
- `pg_restart`: `pg_ctl restart -m immediate` of the round's own PostgreSQL;
- `disk_full`: fill the artifact filesystem for a few seconds, then free it.

The schedule is by progress, not by clock: fault i fires once a set share of the jobs
has finished (and a minimum gap after the previous fault), so faults land while there is
work whatever the machine's speed. A fault that cannot run (no PostgreSQL in the shape,
no tmpfs, the jobs drained first) is recorded as skipped, with the reason."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from chaos.cluster import ArtifactVolume, PostgresCluster
from chaos.fleet import Fleet, WorkerProcess

KINDS = ("sigkill", "sigstop", "sigterm", "pg_restart", "disk_full")


@dataclass
class Fault:
    kind: str
    target: str
    started: float
    ended: float
    pid: int | None = None
    skipped: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(counts: dict[str, int], seed: int, first: float = 0.04, last: float = 0.75) -> list:
    """(progress share, kind) for every planned fault, in order: each kind's faults
    spread evenly over [first, last] with a little jitter."""
    rng = random.Random(seed)
    planned = []
    for kind, count in counts.items():
        step = (last - first) / max(count, 1)
        for i in range(count):
            planned.append((first + step * (i + rng.uniform(0.1, 0.9)), kind))
    return sorted(planned)


class Injector:
    """Runs the plan on a thread of its own; `faults` is the record."""

    def __init__(
        self,
        planned: list[tuple[float, str]],
        fleet: Fleet,
        cluster: PostgresCluster | None,
        volume: ArtifactVolume,
        progress: Callable[[], tuple[float, bool]],
        holders: Callable[[], set[int]],
        *,
        stop_seconds: float,
        full_seconds: float,
        min_gap: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.planned = planned
        self.fleet = fleet
        self.cluster = cluster
        self.volume = volume
        self.progress = progress
        """Returns (share of the jobs finished, whether the round has drained)."""
        self.holders = holders
        """Returns the pids of the workers holding running jobs."""
        self.stop_seconds = stop_seconds
        self.full_seconds = full_seconds
        self.min_gap = min_gap
        self.rng = random.Random(seed)
        self.faults: list[Fault] = []
        self._thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _run(self) -> None:
        last = 0.0
        for index, (share, kind) in enumerate(self.planned):
            while True:
                done, drained = self.progress()
                if drained:
                    for _, left in self.planned[index:]:
                        self._skip(left, "the jobs had drained before it was due")
                    return
                if done >= share and time.monotonic() - last >= self.min_gap:
                    break
                time.sleep(0.1)
            self.inject(kind)
            last = time.monotonic()

    def inject(self, kind: str) -> Fault:
        fault = getattr(self, f"_{kind}")()
        self.faults.append(fault)
        return fault

    def _skip(self, kind: str, reason: str) -> None:
        now = time.time()
        self.faults.append(Fault(kind, "-", now, now, skipped=reason))

    def _victim(self) -> WorkerProcess | None:
        """A random running worker, preferably one that holds jobs right now."""
        for _ in range(50):
            running = self.fleet.running()
            try:
                busy = self.holders()
            except Exception:  # the database may be restarting
                busy = set()
            if running:
                return self.rng.choice([w for w in running if w.pid in busy] or running)
            time.sleep(0.1)
        return None

    def _sigkill(self) -> Fault:
        worker = self._victim()
        if worker is None:
            return Fault("sigkill", "-", time.time(), time.time(), skipped="no running worker")
        moment = time.time()
        os.kill(worker.pid, signal.SIGKILL)
        worker.proc.wait()
        self.fleet.spawn(worker.slot)
        return Fault("sigkill", f"worker {worker.pid}", moment, moment, pid=worker.pid)

    def _sigstop(self) -> Fault:
        worker = self._victim()
        if worker is None:
            return Fault("sigstop", "-", time.time(), time.time(), skipped="no running worker")
        began = time.time()
        os.kill(worker.pid, signal.SIGSTOP)
        worker.stopped = True
        time.sleep(self.stop_seconds)
        os.kill(worker.pid, signal.SIGCONT)
        worker.stopped = False
        return Fault("sigstop", f"worker {worker.pid}", began, time.time(), pid=worker.pid)

    def _sigterm(self) -> Fault:
        worker = self._victim()
        if worker is None:
            return Fault("sigterm", "-", time.time(), time.time(), skipped="no running worker")
        began = time.time()
        worker.proc.send_signal(signal.SIGTERM)
        note = ""
        try:
            worker.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()
            note = "did not exit within 30 s of SIGTERM; killed"
        ended = time.time()
        self.fleet.spawn(worker.slot)
        return Fault("sigterm", f"worker {worker.pid}", began, ended, pid=worker.pid, note=note)

    def _pg_restart(self) -> Fault:
        if self.cluster is None:
            now = time.time()
            return Fault("pg_restart", "-", now, now, skipped="this shape has no PostgreSQL")
        began = time.time()
        self.cluster.restart_immediate()
        return Fault("pg_restart", "postgres", began, time.time())

    def _disk_full(self) -> Fault:
        if not self.volume.mounted:
            now = time.time()
            return Fault("disk_full", "-", now, now, skipped=self.volume.skip_reason)
        began = time.time()
        written = self.volume.fill()
        time.sleep(self.full_seconds)
        self.volume.clear()
        note = f"ballast of {written / 2**20:.1f} MiB filled the artifact filesystem"
        return Fault("disk_full", "artifact filesystem", began, time.time(), note=note)
