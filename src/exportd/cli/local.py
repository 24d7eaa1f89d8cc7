"""`LocalJobs`: the job store opened in this process (the SQLite file under
`EXPORTD_HOME`, or `EXPORTD_DATABASE_URL`) with the methods of `Client` that the
commands use and the same exceptions, so that every command works alike with and
without a server.

Requests are validated exactly as the API validates them (`build_job`). Exports created
here run in this process, in one worker slot started with the first; one that has not
finished when the command ends is cancelled then. SIGINT does not interrupt a store
operation: it is noticed between polls and chunks, where `KeyboardInterrupt` is raised."""

from __future__ import annotations

import builtins
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pydantic

from exportd.client import (
    ApiError,
    DownloadResult,
    ExporterInfo,
    HistoryEntry,
    InvalidRequest,
    Job,
    JobPage,
    ServerError,
)
from exportd.client._core import PROBLEM_CLASSES
from exportd.client._download import CHUNK, PartFile, ProgressCallback, target_path
from exportd.client._watch import PollIntervals, Watcher
from exportd.config import Settings
from exportd.errors import ExportdError, RetryLimitReached

if TYPE_CHECKING:
    from exportd.api.problems import Problem
    from exportd.exporters import Registry
    from exportd.jobs import Job as StoredJob
    from exportd.runtime import Runtime

LOCAL_OWNER = "local"
POLL_SECONDS = 0.1
STOP_WAIT_SECONDS = 15.0
"""How long an unfinished export created here gets to stop once cancelled."""


def as_client_error(problem: Problem) -> ApiError:
    """The exception `Client` raises for the same problem answered by a server."""
    body = {"status": problem.status, "code": problem.code, "detail": problem.detail}
    body.update(problem.extra)
    cls = PROBLEM_CLASSES.get(problem.status, ServerError if problem.status >= 500 else ApiError)
    return cls(problem.status, problem.code, problem.detail, body)


@contextmanager
def translated() -> Iterator[None]:
    """Raise what the API would answer for a problem or an exportd error, as `Client`."""
    from exportd.api.problems import Problem, from_error

    try:
        yield
    except Problem as problem:
        raise as_client_error(problem) from None
    except RetryLimitReached as exc:
        raise as_client_error(Problem(409, "retry_limit_reached", str(exc))) from None
    except ExportdError as exc:
        raise as_client_error(from_error(exc)) from None
    except pydantic.ValidationError as exc:
        errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors()]
        body = {"code": "validation_error", "detail": "invalid request", "errors": errors}
        raise InvalidRequest(422, "validation_error", "invalid request", body) from None


def exporter_infos(registry: Registry, settings: Settings) -> list[ExporterInfo]:
    """The exporters as `GET /v1/exporters` describes them (with these settings' limits)."""
    from exportd.api.openapi import params_schema
    from exportd.formats import FORMATS

    return [
        ExporterInfo(
            name=spec.name,
            description=spec.description,
            formats=tuple(f for f in spec.formats if f in FORMATS),
            params_schema=params_schema(spec, settings),
        )
        for spec in registry
    ]


def snapshot(job: StoredJob) -> Job:
    """The job as `Client` returns it."""
    from exportd.api.schemas import job_out

    return Job.from_dict(job_out(job).model_dump(mode="json"))


class LocalJobs:
    def __init__(self, runtime: Runtime, interrupted: threading.Event) -> None:
        self.runtime = runtime
        self.url = runtime.store.engine.url.render_as_string(hide_password=True)
        self._interrupted = interrupted
        self._created: list[str] = []

    # -- jobs -----------------------------------------------------------------------

    def create(
        self,
        exporter: str,
        params: Mapping[str, Any] | None = None,
        *,
        format: str = "csv",
        compression: str = "none",
        labels: Mapping[str, str] | None = None,
    ) -> Job:
        """Validate as the API does, queue the job and make sure a slot here runs it."""
        from exportd.api.auth import Principal
        from exportd.api.routes_exports import build_job
        from exportd.api.schemas import ExportRequest

        principal = Principal(LOCAL_OWNER, admin=True, actor=f"{LOCAL_OWNER}/cli")
        with translated():
            body = ExportRequest(
                exporter=exporter,
                params=dict(params or {}),
                format=format,
                compression=compression,
                labels=dict(labels or {}),
            )
            job = self.runtime.store.enqueue(build_job(self.runtime, principal, body))
        if not self._created:
            self.runtime.start_worker(concurrency=1)
        self._created.append(job.id)
        return snapshot(job)

    def get(self, job_id: str) -> Job:
        with translated():
            return snapshot(self.runtime.store.get(job_id))

    def list(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        label: Mapping[str, str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """One page of every owner's jobs, newest first."""
        from exportd.jobs import Status

        statuses = [status] if isinstance(status, str) else builtins.list(status or ())
        with translated():
            page = self.runtime.store.list_jobs(
                None,
                status=[Status(s) for s in statuses],
                exporter=exporter,
                batch_id=batch_id,
                labels=sorted((label or {}).items()),
                limit=limit,
                cursor=cursor,
            )
        return JobPage(tuple(snapshot(job) for job in page.jobs), page.next_cursor)

    def iter_jobs(
        self,
        *,
        status: str | Iterable[str] | None = None,
        exporter: str | None = None,
        batch_id: str | None = None,
        label: Mapping[str, str] | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.list(
                status=status,
                exporter=exporter,
                batch_id=batch_id,
                label=label,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def watch(
        self, job_id: str, *, stall_timeout: float | None = None, timeout: float | None = None
    ) -> Iterator[Job]:
        """Snapshots as the job changes, polled from the store, ending with its terminal
        one; `JobStalled` and `WatchTimeout` as from `Client.watch`."""
        watcher = Watcher(
            job_id,
            stall_timeout=stall_timeout,
            timeout=timeout,
            sse=False,
            intervals=PollIntervals(),
        )
        while True:
            changed = watcher.observe(self.get(job_id))
            if changed is not None:
                yield changed
            if watcher.finished:
                return
            self._pause(POLL_SECONDS)
            watcher.check()

    def iter_history(self, job_id: str) -> Iterator[HistoryEntry]:
        """The job's events, oldest first, as the API's history shows them."""
        after = 0
        while True:
            with translated():
                events = self.runtime.store.history(job_id, after=after, limit=500)
            for event in events:
                yield HistoryEntry(
                    id=event.id,
                    type=event.type,
                    at=event.created_at,
                    status=event.data.get("status"),
                    actor=event.actor or "worker",
                    data=event.data,
                )
            if len(events) < 500:
                return
            after = events[-1].id

    def cancel(self, job_id: str) -> Job:
        with translated():
            return snapshot(self.runtime.store.request_cancel(job_id, actor=self._actor))

    def retry(self, job_id: str) -> Job:
        """Queue the job again; a server or worker on this store runs it."""
        with translated():
            job = self.runtime.store.retry(
                job_id, max_retries=self.runtime.settings.max_manual_retries, actor=self._actor
            )
        return snapshot(job)

    def delete(self, job_id: str) -> None:
        """Cancel the job if needed, wait for it to stop, remove it and its files."""
        store = self.runtime.store
        with translated():
            self._stop(job_id)
            deleted = store.delete(job_id, actor=self._actor)
        for artifact in deleted.artifacts:
            self.runtime.storage.delete(artifact.storage_key)

    def exporters(self) -> builtins.list[ExporterInfo]:
        return exporter_infos(self.runtime.registry, self.runtime.settings)

    # -- files ----------------------------------------------------------------------

    def download(
        self,
        job_id: str,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DownloadResult:
        """Copy the job's file out of storage through a `.part`, verifying its sha256."""
        from exportd.api.routes_exports import pick_artifact

        with translated():
            stored = pick_artifact(self.runtime.store.get(job_id), name)
        artifact = next(a for a in self.get(job_id).artifacts if a.name == stored.name)
        part = PartFile(target_path(path, artifact))
        part.open(resume=False)
        try:
            with self.runtime.storage.open_read(stored.storage_key) as source:
                while chunk := source.read(CHUNK):
                    part.write(chunk)
                    if on_progress is not None:
                        on_progress(part.size, artifact.size)
                    self._pause(0)
            final = part.commit({artifact.sha256})
        except BaseException:
            part.discard()
            raise
        return DownloadResult(final, artifact)

    # -- the end --------------------------------------------------------------------

    def close(self) -> None:
        """Cancel the exports created here that have not ended, let them stop, and close
        the store (a job left running would be queued again with nobody to run it)."""
        try:
            for job_id in self._created:
                self._stop(job_id, wait=STOP_WAIT_SECONDS, interruptible=False)
        finally:
            self.runtime.close(grace=1.0)

    def _stop(
        self, job_id: str, *, wait: float = STOP_WAIT_SECONDS, interruptible: bool = True
    ) -> StoredJob:
        from exportd.jobs import Status

        store = self.runtime.store
        job = store.get(job_id)
        if not job.status.terminal:
            job = store.request_cancel(job_id, actor=self._actor)
        deadline = time.monotonic() + wait
        while job.status == Status.RUNNING and time.monotonic() < deadline:
            if interruptible:
                self._pause(POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)
            job = store.get(job_id)
        return job

    def _pause(self, seconds: float) -> None:
        """Wait; raise `KeyboardInterrupt` if SIGINT came meanwhile (or before)."""
        if self._interrupted.wait(seconds) if seconds else self._interrupted.is_set():
            raise KeyboardInterrupt

    @property
    def _actor(self) -> str:
        return f"{LOCAL_OWNER}/cli"
