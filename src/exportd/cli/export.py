"""`exportd export`: run one export and save its file, on a server (`--url`) or in this
process on the embedded default (SQLite and a folder under `EXPORTD_HOME`).

Exit codes: 0 the file is saved and verified; 1 the export failed; 2 bad usage (including
params the exporter rejects); 130 interrupted (the job is cancelled first).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from exportd.cli import app_option, cli
from exportd.cli.jobs import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    connection_options,
    fail,
    label_option,
    parse_labels,
)

if TYPE_CHECKING:
    # The client (httpx) is imported where it is used: `exportd worker` and `exportd
    # serve` register this command too and never need it.
    from exportd.client import Job

LOCAL_OWNER = "local"


@dataclass(frozen=True)
class Order:
    """What `exportd export` was asked for."""

    exporter: str
    params: dict[str, Any]
    format: str
    compression: str
    output: str | None
    name: str | None
    timeout: float | None
    stall_timeout: float | None
    labels: dict[str, str]


LOCAL_POLL_SECONDS = 0.1


def parse_params(pairs: tuple[str, ...], params_json: str | None) -> dict[str, Any]:
    """`--params-json` first, then each `-p key=value` on top; values are JSON when they
    parse (`rows=1000` is a number) and strings otherwise; `a.b=1` sets a nested key."""
    params: dict[str, Any] = {}
    if params_json:
        try:
            loaded = json.loads(params_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--params-json") from None
        if not isinstance(loaded, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--params-json")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-p")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.strip().split(".")
        target = params
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise click.BadParameter(f"{key!r}: {part!r} is not an object", param_hint="-p")
        target[leaf] = value
    return params


# -- progress display -------------------------------------------------------------------


def _amount(value: float, unit: str) -> str:
    if unit != "bytes":
        return f"{value:,.0f}"
    for suffix in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or suffix == "TB":
            return f"{value:,.0f} {suffix}" if suffix == "B" else f"{value:,.1f} {suffix}"
        value /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressDisplay:
    """A live bar on a terminal (rewritten in place); plain lines every `interval` seconds
    (and on each change of status) otherwise."""

    def __init__(self, stream: IO[str], *, interval: float = 2.0) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self.interval = interval
        self._last_line = 0.0
        self._last_status: str | None = None
        self._shown = False

    def job(self, job: Job) -> None:
        p = job.progress
        unit = "" if p.unit == "bytes" else f" {p.unit}"
        parts = [f"{job.status:<9}"]
        if p.total:
            parts.append(f"{_amount(p.done, p.unit)}/{_amount(p.total, p.unit)}{unit}")
        else:
            parts.append(f"{_amount(p.done, p.unit)}{unit}")
        if p.rate:
            parts.append(f"{_amount(p.rate, p.unit)}{unit}/s")
        if p.eta_seconds is not None and job.status == "running":
            parts.append(f"ETA {_duration(p.eta_seconds)}")
        if p.message:
            parts.append(p.message)
        changed = job.status != self._last_status
        self._last_status = job.status
        self._show(p.percent, "  ".join(parts), force=changed, prefix=f"export {job.id} ")

    def transfer(self, done: int, total: int | None) -> None:
        percent = 100.0 * done / total if total else None
        amount = _amount(done, "bytes") + (f"/{_amount(total, 'bytes')}" if total else "")
        self._show(percent, f"saving     {amount}", force=False, prefix="")

    def _show(self, percent: float | None, text: str, *, force: bool, prefix: str) -> None:
        now = time.monotonic()
        if self.live:
            width = shutil.get_terminal_size((100, 20)).columns
            line = f"{self._bar(percent)} {text}"[: width - 1]
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
            self._shown = True
        elif force or now - self._last_line >= self.interval:
            share = f"{percent:5.1f}% " if percent is not None else ""
            self.stream.write(f"{prefix}{share}{text}\n")
            self.stream.flush()
            self._last_line = now

    @staticmethod
    def _bar(percent: float | None, width: int = 24) -> str:
        if percent is None:
            return "[" + " " * width + "]    ?%"
        filled = int(width * min(percent, 100.0) / 100)
        return f"[{'#' * filled}{'-' * (width - filled)}] {percent:5.1f}%"

    def say(self, text: str) -> None:
        """Print a message on its own line (ending the live bar first)."""
        if self.live and self._shown:
            self.stream.write("\r\033[K")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()


# -- the command ------------------------------------------------------------------------


@cli.command("export")
@click.argument("exporter")
@click.option(
    "-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A param (repeatable)."
)
@click.option("--params-json", default=None, metavar="JSON", help="Params as one JSON object.")
@click.option("-f", "--format", "format_", default="csv", show_default=True)
@click.option(
    "-c",
    "--compression",
    type=click.Choice(["none", "gzip", "zstd", "brotli"]),
    default="none",
    show_default=True,
)
@click.option(
    "-o",
    "--output",
    type=click.Path(),
    default=None,
    help="File or directory to save to [default: the file's name, here].",
)
@click.option("--name", default=None, help="Which file to save, for exports with several.")
@click.option("--timeout", type=float, default=None, help="Give up after N seconds.")
@click.option(
    "--stall-timeout", type=float, default=None, help="Give up after N s without progress."
)
@label_option
@connection_options
@app_option
def export(
    exporter: str,
    pairs: tuple[str, ...],
    params_json: str | None,
    format_: str,
    compression: str,
    output: str | None,
    name: str | None,
    timeout: float | None,
    stall_timeout: float | None,
    label_pairs: tuple[str, ...],
    url: str | None,
    token: str | None,
    apps: tuple[str, ...],
) -> None:
    """Run EXPORTER, show its progress, save and verify its file, print where it is.

    With --url (or EXPORTD_URL) the export runs on that server; otherwise in this process
    on the embedded store under EXPORTD_HOME (--app loads more exporters). Ctrl-C cancels
    the export before exiting with 130.
    """
    order = Order(
        exporter,
        parse_params(pairs, params_json),
        format_,
        compression,
        output,
        name,
        timeout,
        stall_timeout,
        parse_labels(label_pairs),
    )
    display = ProgressDisplay(sys.stderr)
    path = _remote(url, token, order, display) if url else _local(apps, order, display)
    click.echo(str(path))


def _remote(url: str, token: str | None, order: Order, display: ProgressDisplay) -> Path:
    from exportd.client import Client, ClientError

    job: Job | None = None
    with Client(url, token) as client:
        try:
            job = client.create(
                order.exporter,
                order.params,
                format=order.format,
                compression=order.compression,
                labels=order.labels,
            )
            display.say(f"export {job.id} queued on {client.url}")
            watching = client.watch(
                job.id, stall_timeout=order.stall_timeout, timeout=order.timeout
            )
            for snapshot in watching:
                job = snapshot
                display.job(job)
            _finished(job, display)
            result = client.download(
                job.id, order.output or ".", name=order.name, on_progress=display.transfer
            )
        except KeyboardInterrupt:
            _interrupted(display, job, lambda job_id: client.cancel(job_id))
        except ClientError as exc:
            display.say("")
            fail(exc)
    display.say(f"saved {result.artifact.size:,} bytes, sha256 verified: {result.path}")
    return result.path


def _finished(job: Job, display: ProgressDisplay) -> None:
    if job.status == "completed":
        return
    reason = f"{job.error.code}: {job.error.message}" if job.error else job.status
    display.say(f"error: export {job.id} {job.status}: {reason}")
    sys.exit(EXIT_FAILED)


def _interrupted(
    display: ProgressDisplay, job: Job | None, cancel: Callable[[str], object]
) -> NoReturn:
    from exportd.client import ClientError

    if job is not None:
        display.say(f"interrupted: cancelling export {job.id}")
        try:
            cancel(job.id)
        except (ClientError, KeyboardInterrupt) as exc:
            display.say(f"could not cancel {job.id}: {exc}")
    else:
        display.say("interrupted")
    sys.exit(EXIT_INTERRUPTED)


# -- in-process -------------------------------------------------------------------------


def _local(apps: tuple[str, ...], order: Order, display: ProgressDisplay) -> Path:
    from exportd.config import Settings
    from exportd.runtime import Runtime

    runtime = Runtime.open(Settings(), apps=apps)
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _n, _f: stop.set())
    try:
        job_id = _enqueue(runtime, order)
        display.say(f"export {job_id} running in this process ({runtime.settings.home})")
        runtime.start_worker(concurrency=1)
        job = _follow(runtime, job_id, display, stop, order.timeout)
        if job is None:
            interrupted = stop.is_set()
            reason = "interrupted" if interrupted else f"no result after {order.timeout:g}s"
            display.say(f"{reason}: cancelling export {job_id}")
            runtime.store.request_cancel(job_id)
            _follow(runtime, job_id, display, threading.Event(), 15.0)
            sys.exit(EXIT_INTERRUPTED if interrupted else EXIT_FAILED)
        _finished(job, display)
        return _copy_out(runtime, job_id, job, order, display)
    finally:
        signal.signal(signal.SIGINT, previous)
        runtime.close(grace=1.0)


def _enqueue(runtime: Any, order: Order) -> str:
    """Validate like the API does (bad input is a usage error) and queue the job."""
    import pydantic

    from exportd.formats import FORMATS
    from exportd.jobs import NewJob

    exporter = order.exporter
    if exporter not in runtime.registry:
        names = ", ".join(spec.name for spec in runtime.registry)
        raise click.BadParameter(
            f"no exporter named {exporter!r} (have: {names})", param_hint="EXPORTER"
        )
    spec = runtime.registry.get(exporter)
    try:
        validated = spec.validate(order.params)
    except pydantic.ValidationError as exc:
        fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.BadParameter(f"invalid params: {fields}", param_hint="-p") from None
    if order.format not in FORMATS or order.format not in spec.formats:
        allowed = ", ".join(f for f in spec.formats if f in FORMATS)
        raise click.BadParameter(
            f"{exporter!r} cannot write it (use {allowed})", param_hint="--format"
        )
    spec.authorize(validated, True)
    new = NewJob(
        owner=LOCAL_OWNER,
        exporter=spec.name,
        params=validated.model_dump(mode="json"),
        max_attempts=runtime.settings.max_attempts,
        max_runtime_seconds=runtime.settings.max_runtime_seconds,
        format=order.format,
        compression=order.compression,
        labels=_valid_labels(order.labels),
    )
    job_id: str = runtime.store.enqueue(new).id
    return job_id


def _valid_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels, checked as the API checks them."""
    import pydantic

    from exportd.api.schemas import Labels

    try:
        valid: dict[str, str] = pydantic.TypeAdapter(Labels).validate_python(labels)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.BadParameter(problems, param_hint="--label") from None
    return valid


def _follow(
    runtime: Any,
    job_id: str,
    display: ProgressDisplay,
    stop: threading.Event,
    timeout: float | None,
) -> Job | None:
    """Poll the store until the job ends: its last snapshot, or None when interrupted."""
    from exportd.api.schemas import job_out
    from exportd.client import Job

    deadline = time.monotonic() + timeout if timeout else None
    while True:
        job = Job.from_dict(job_out(runtime.store.get(job_id)).model_dump(mode="json"))
        display.job(job)
        if job.is_terminal:
            return job
        if stop.wait(LOCAL_POLL_SECONDS) or (deadline and time.monotonic() > deadline):
            return None


def _copy_out(runtime: Any, job_id: str, job: Job, order: Order, display: ProgressDisplay) -> Path:
    """Copy the artifact out of local storage through a verified `.part`."""
    from exportd.client._core import pick_artifact
    from exportd.client._download import CHUNK, PartFile, target_path

    artifact = pick_artifact(job, order.name)
    if artifact is None:
        names = ", ".join(a.name for a in job.artifacts)
        raise click.BadParameter(f"pick one of: {names}", param_hint="--name")
    stored = next(a for a in runtime.store.get(job_id).artifacts if a.name == artifact.name)
    part = PartFile(target_path(order.output or ".", artifact))
    part.open(resume=False)
    try:
        with runtime.storage.open_read(stored.storage_key) as source:
            while chunk := source.read(CHUNK):
                part.write(chunk)
                display.transfer(part.size, artifact.size)
        path = part.commit({artifact.sha256})
    finally:
        part.close()
    display.say(f"saved {artifact.size:,} bytes, sha256 verified: {path}")
    return path
