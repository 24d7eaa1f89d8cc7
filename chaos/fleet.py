"""The exportd processes of a round, started the way an operator starts them: `exportd
migrate`, `exportd token create`, one `exportd serve --no-workers` and N `exportd worker`,
each a subprocess with its settings in EXPORTD_* variables and its stderr in a file of
its own (the check greps them for deadlocks and errors).

A worker that was killed is replaced by a new process in the same slot, so the round
keeps N workers; every pid ever started is remembered, because the check ties each
attempt to the process that held it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from chaos.cluster import free_port

ROOT = Path(__file__).resolve().parent.parent
APP = "chaos.exporters"


def exportd_env(settings: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """This environment without any EXPORTD_* of the caller's, plus `settings` (as
    EXPORTD_<NAME>) and `extra`, with the repository on PYTHONPATH for `--app`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTD_")}
    env.update({f"EXPORTD_{name.upper()}": value for name, value in settings.items()})
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


@dataclass
class WorkerProcess:
    slot: int
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    stopped: bool = False
    """SIGSTOPped and not yet continued."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Fleet:
    workdir: Path
    env: dict[str, str]
    workers: int
    serve_port: int = field(default_factory=free_port)
    slots: dict[int, WorkerProcess] = field(default_factory=dict)
    history: list[WorkerProcess] = field(default_factory=list)
    serve: subprocess.Popen[bytes] | None = None
    teardown_kills: list[int] = field(default_factory=list)
    """Processes that did not stop on SIGTERM at the end and had to be killed."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    @property
    def logs(self) -> Path:
        path = self.workdir / "logs"
        path.mkdir(exist_ok=True)
        return path

    def exportd(self, *args: str) -> str:
        """Run one exportd command to its end; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "exportd", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"exportd {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def migrate(self) -> None:
        self.exportd("migrate")

    def tokens(self, owners: list[str]) -> dict[str, str]:
        """A token per owner, plus `admin` (an admin token), created in parallel."""

        def create(owner: str) -> str:
            extra = ["--admin"] if owner == "admin" else []
            return self.exportd("token", "create", "--owner", owner, *extra).strip()

        names = [*owners, "admin"]
        with ThreadPoolExecutor(4) as pool:
            return dict(zip(names, pool.map(create, names), strict=True))

    def start_serve(self, timeout: float = 60) -> None:
        log = open(self.logs / "serve.log", "wb")  # noqa: SIM115 - the child keeps it
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "exportd", "serve", "--no-workers", "--app", APP,
             "--port", str(self.serve_port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if self.serve.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"exportd serve did not start (see {self.logs / 'serve.log'})")

    def start_workers(self) -> None:
        for slot in range(self.workers):
            self.spawn(slot)

    def spawn(self, slot: int) -> WorkerProcess:
        number = len(self.history)
        path = self.logs / f"worker-{number:03d}.log"
        log = open(path, "wb")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", "exportd", "worker", "--app", APP],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        worker = WorkerProcess(slot, proc, path, time.time())
        self.slots[slot] = worker
        self.history.append(worker)
        return worker

    def running(self) -> list[WorkerProcess]:
        """Workers alive and not stopped: the ones a fault may hit."""
        return [w for w in self.slots.values() if w.alive() and not w.stopped]

    def pids(self) -> set[int]:
        return {w.pid for w in self.history}

    def stop_all(self, grace: float = 20) -> None:
        """Continue any stopped worker, SIGTERM everything, wait, kill what is left."""
        for worker in self.slots.values():
            if worker.stopped and worker.alive():
                os.kill(worker.pid, signal.SIGCONT)
                worker.stopped = False
        procs = [w.proc for w in self.slots.values()]
        procs += [self.serve] if self.serve is not None else []
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.teardown_kills.append(proc.pid)
                proc.kill()
                proc.wait()
