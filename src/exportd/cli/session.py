"""Where `exportd export`, `exportd jobs …` and `exportd exporters` work: on a server
(`--url` / `EXPORTD_URL`, with `--token` / `EXPORTD_TOKEN`), or, without a URL, on the
local job store in this process (`LocalJobs`). Both offer the same calls (`Jobs`) and
raise the same errors."""

from __future__ import annotations

import builtins
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from exportd.cli.errors import EXIT_INTERRUPTED, fail

if TYPE_CHECKING:
    import os

    from exportd.client import DownloadResult, ExporterInfo, HistoryEntry, Job, JobPage
    from exportd.client._download import ProgressCallback

F = TypeVar("F", bound=Callable[..., Any])

WHERE = (
    "With --url (or EXPORTD_URL) this talks to that server; without, it works in this "
    "process on the local job store (EXPORTD_HOME, ./.exportd, or EXPORTD_DATABASE_URL)."
)


class Jobs(Protocol):
    """What the commands call, on a server (`exportd.Client`) or locally (`LocalJobs`)."""

    url: str

    def create(
        self,
        exporter: str,
        params: Mapping[str, Any] | None = None,
        *,
        format: str = "csv",
        compression: str = "none",
        labels: Mapping[str, str] | None = None,
    ) -> Job: ...

    def get(self, job_id: str) -> Job: ...

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        label: Mapping[str, str] | None = None,
        limit: int = 50,
    ) -> JobPage: ...

    def iter_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        label: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]: ...

    def iter_history(self, job_id: str) -> Iterator[HistoryEntry]: ...

    def watch(
        self, job_id: str, *, stall_timeout: float | None = None, timeout: float | None = None
    ) -> Iterator[Job]: ...

    def cancel(self, job_id: str) -> Job: ...

    def retry(self, job_id: str) -> Job: ...

    def delete(self, job_id: str) -> None: ...

    def download(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadResult: ...

    def exporters(self) -> builtins.list[ExporterInfo]: ...


def connection_options(command: F) -> F:
    """`--url` and `--token`, also read from `EXPORTD_URL` and `EXPORTD_TOKEN`."""
    command = click.option(
        "--token",
        envvar="EXPORTD_TOKEN",
        default=None,
        help="API token for --url [env EXPORTD_TOKEN].",
    )(command)
    return click.option(
        "--url",
        envvar="EXPORTD_URL",
        default=None,
        help="Server to use, e.g. http://127.0.0.1:8000 [env EXPORTD_URL]; "
        "without it, the local job store, in this process.",
    )(command)


@contextmanager
def connect(url: str | None, token: str | None, *, apps: Iterable[str] = ()) -> Iterator[Jobs]:
    """A `Client` of `url`, or `LocalJobs` without one. A `ClientError` ends the command
    with its message and exit code, Ctrl-C with 130."""
    from exportd.client import Client, ClientError

    try:
        if url:
            with Client(url, token) as client:
                yield client
        else:
            with local_jobs(apps, token_ignored=bool(token)) as local:
                yield local
    except ClientError as exc:
        fail(exc, url)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


@contextmanager
def local_jobs(apps: Iterable[str], *, token_ignored: bool = False) -> Iterator[Jobs]:
    """`LocalJobs` on the store of this environment's settings, with SIGINT noticed
    between store operations (a second one interrupts at once)."""
    from exportd.cli.local import LocalJobs
    from exportd.cli.stores import open_runtime

    runtime = open_runtime(apps=apps, note="no --url / EXPORTD_URL: working in this process")
    if token_ignored:
        click.echo("note: the token is not used without --url / EXPORTD_URL", err=True)
    interrupted = threading.Event()

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    jobs = LocalJobs(runtime, interrupted)
    try:
        yield jobs
    finally:
        try:
            jobs.close()
        finally:
            signal.signal(signal.SIGINT, previous)
