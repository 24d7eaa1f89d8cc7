"""`JobRunner`: runs one claimed attempt — plan, produce, publish, complete — and records
how it ended. What files an attempt writes (parts, bundles, manifests) is decided by
`formats.plan_output` and written by `formats.Output`; the runner only wires the
exporter to it and keeps progress, cancellation and the lease."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from pydantic import BaseModel

from exportd.config import Settings
from exportd.errors import ExportCancelled, LeaseLost, QuotaExceeded, StoreError
from exportd.exporters import Encoded, ExporterSpec, NamedBatch, Registry
from exportd.formats import Output, OutputFile, OutputPlan, plan_output
from exportd.jobs import Artifact, Claim, ErrorInfo, Job, RetryPolicy, classify, utcnow
from exportd.observability import attempts as observe
from exportd.observability.logs import job_context
from exportd.observability.metrics import record_claim
from exportd.storage import ArtifactStorage, claim_prefix
from exportd.store import ClaimRequest, SqlJobStore
from exportd.worker.attempt import Attempt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What an attempt will do, checked before any row is produced."""

    spec: ExporterSpec
    params: BaseModel
    output: OutputPlan


class RunContext:
    """The `ExportContext` an exporter sees: the attempt's progress and cancellation,
    plus the job's format, the settings and the encoded-bytes fast path."""

    def __init__(self, attempt: Attempt, output: Output, settings: Settings) -> None:
        self._attempt = attempt
        self._output = output
        self.job_id = attempt.job_id
        self.attempt = attempt.attempt
        self.claim_id = attempt.claim.token
        self.owner = attempt.owner
        self.format = output.plan.formats[0].name
        self.settings = settings
        self.csv_formula_escape = output.plan.csv_formula_escape

    def set_total(self, total: int | None, unit: str = "rows", *, estimated: bool = False) -> None:
        self._attempt.set_total(total, unit, estimated=estimated)
        if not estimated:
            self._output.plan.check_total(total)

    def step(self, message: str) -> None:
        self._attempt.step(message)

    def checkpoint(self) -> None:
        self._attempt.checkpoint()

    def accepts_encoded(self, fmt: str) -> bool:
        return self._output.accepts_encoded == fmt


class JobRunner:
    def __init__(
        self,
        store: SqlJobStore,
        storage: ArtifactStorage,
        registry: Registry,
        *,
        retry_policy: RetryPolicy,
        lease_seconds: float,
        progress_interval: float = 0.25,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.registry = registry
        self.retry_policy = retry_policy
        self.lease_seconds = lease_seconds
        self.progress_interval = progress_interval
        self.settings = settings or Settings()
        self.scratch_dir = self.settings.resolved_scratch_dir()
        """Resolved once: resolving a path is a syscall per component, and every
        attempt needs it."""

    def attempt_for(self, claim: Claim) -> Attempt:
        return Attempt(
            self.store,
            claim,
            lease_seconds=self.lease_seconds,
            progress_interval=self.progress_interval,
        )

    def run(
        self,
        attempt: Attempt,
        *,
        then_claim: Callable[[], ClaimRequest | None] | None = None,
    ) -> Job | None:
        """Run the attempt to its end; returns the job as stored afterwards, or None when
        nothing this attempt did was kept (its lease was taken, or the store could not
        be reached to record the end: the rescuer then ends it). With `then_claim`, a
        completed attempt's slot claims the next job, in a transaction of its own, and
        leaves it in `attempt.next_claim`."""
        claimed = attempt.claim.job
        with job_context(claimed):
            observe.started(claimed)
            job, completing = self._attempt(attempt)
            observe.ended(claimed, job, time.monotonic() - attempt.started, attempt.stop_reason)
        if completing and job is not None and then_claim is not None:
            attempt.next_claim = self._claim_next(then_claim())
        return job

    def _attempt(self, attempt: Attempt) -> tuple[Job | None, bool]:
        """The attempt's end as stored, and whether it reached the completion."""
        try:
            files = self._produce(attempt)
        except LeaseLost:
            log.warning("job %s attempt %s: lease lost", attempt.job_id, attempt.attempt)
            return None, False
        except Exception as exc:
            return self._end_with(attempt, exc), False
        return self._complete(attempt, files), True

    def _claim_next(self, request: ClaimRequest | None) -> Claim | None:
        if request is None:
            return None
        started = time.monotonic()
        try:
            taken = self.store.claim_many(
                request.worker_id,
                1,
                lease_seconds=request.lease_seconds,
                owner_cap=request.owner_cap,
            )
            record_claim(time.monotonic() - started, len(taken))
        except StoreError:
            log.debug("claiming after a completion failed; the claim loop will", exc_info=True)
            return None
        return taken[0] if taken else None

    def _plan(self, job: Job) -> Plan:
        spec = self.registry.get(job.exporter)
        params = spec.validate(job.params)
        output = plan_output(
            job_id=job.id,
            format=job.format,
            compression=job.compression,
            options=job.options,
            filename=job.filename,
            allowed=spec.formats,
            document=spec.kind == "document",
            multi_file=spec.multi_file,
            max_parts=self.settings.max_parts,
        )
        return Plan(spec, params, output)

    def _produce(self, attempt: Attempt) -> list[OutputFile]:
        """Write every file of the attempt and publish them together; on any failure
        (or cancellation) nothing stays behind."""
        job = attempt.claim.job
        plan = self._plan(job)
        output = Output(
            plan.output,
            self.storage,
            key_prefix=claim_prefix(job.owner, job.id, attempt.claim.token),
            tag=attempt.claim.token,
            workdir=self.scratch_dir,
            max_bytes=self.settings.max_output_bytes,
        )
        try:
            self._write(attempt, plan, output)
            attempt.checkpoint()
        except BaseException:
            output.discard()
            raise
        return output.publish(utcnow())

    def _write(self, attempt: Attempt, plan: Plan, output: Output) -> None:
        ctx = RunContext(attempt, output, self.settings)
        if plan.spec.kind == "document":
            attempt.set_total(1, "documents")
            output.write_document(plan.spec.render(plan.params, ctx))
            attempt.advance(1)
            return
        for item in plan.spec.run(plan.params, ctx):
            attempt.checkpoint()
            if isinstance(item, Encoded):
                output.write_encoded(item.data, item.rows)
                attempt.advance(item.rows)
            elif isinstance(item, NamedBatch):
                output.write(item.batch, item.name)
                attempt.advance(item.batch.num_rows)
            else:
                output.write(item)
                attempt.advance(item.num_rows)
            del item  # not kept alive beside the next batch while that one is made

    def _complete(self, attempt: Attempt, files: list[OutputFile]) -> Job | None:
        """Record the published files and finish the job. Whatever the store answers, it
        is never a failure of the export: a lost lease means the files are someone
        else's garbage (removed now: their keys are this claim's alone); a store that
        stays unreachable through the retries leaves the attempt to the rescuer, which
        removes the files if the completion did not commit."""
        artifacts = [
            Artifact(
                job_id=attempt.job_id,
                name=file.entry.name,
                storage_key=file.key,
                size=file.entry.size,
                sha256=file.entry.sha256,
                content_type=file.entry.content_type,
                rows=file.entry.rows,
            )
            for file in files
        ]
        job = attempt.claim.job
        ttl = job.ttl_seconds or self.settings.artifact_ttl
        try:
            return self.store.complete(
                attempt.claim,
                artifacts,
                attempt.final_progress(),
                expires_at=utcnow() + timedelta(seconds=ttl),
                quota=self.settings.owner_storage_quota,
            )
        except LeaseLost:
            log.warning("job %s attempt %s: lease lost", attempt.job_id, attempt.attempt)
            for file in files:
                self.storage.delete(file.key)
        except QuotaExceeded as exc:
            for file in files:
                self.storage.delete(file.key)
            return self._end_with(attempt, exc)
        except StoreError:
            log.error(
                "job %s attempt %s: the completion could not be stored; the rescuer ends it",
                attempt.job_id,
                attempt.attempt,
                exc_info=True,
            )
        return None

    def _end_with(self, attempt: Attempt, exc: Exception) -> Job | None:
        claim = attempt.claim
        reason = exc.reason if isinstance(exc, ExportCancelled) else attempt.stop_reason
        try:
            if reason == "cancelled":
                return self.store.mark_cancelled(claim)
            if reason == "shutdown":
                return self.store.release(claim)
            if reason == "lease_lost" or isinstance(exc, StoreError):
                return None  # not the export's fault: the rescuer ends the attempt
            return self._fail(claim, classify(exc), exc)
        except LeaseLost:
            return None
        except StoreError:
            log.error(
                "job %s attempt %s: its end could not be stored; the rescuer ends it",
                attempt.job_id,
                attempt.attempt,
                exc_info=True,
            )
            return None

    def _fail(self, claim: Claim, error: ErrorInfo, exc: Exception) -> Job:
        job = claim.job
        if error.code == "max_runtime_exceeded":
            error = ErrorInfo(
                error.code, f"the export ran longer than {job.max_runtime_seconds:g} s", False
            )
        retry = error.retryable and job.attempt < job.max_attempts
        log.log(
            logging.WARNING if retry else logging.ERROR,
            "job %s attempt %s/%s failed (%s): %s",
            job.id,
            job.attempt,
            job.max_attempts,
            error.code,
            error.message,
            exc_info=error.code == "unexpected_error",
        )
        retry_at = (
            utcnow() + timedelta(seconds=self.retry_policy.delay(job.attempt)) if retry else None
        )
        return self.store.fail(claim, error, retry_at=retry_at)
