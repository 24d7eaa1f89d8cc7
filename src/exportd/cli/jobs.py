"""`exportd jobs …`: list, show, watch, cancel, retry, download and remove jobs, on a
server (`--url`/`EXPORTD_URL`, `--token`/`EXPORTD_TOKEN`) or, without a URL, on the
local job store in this process (`cli.local`), as `exportd export` does."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from exportd.cli import cli
from exportd.cli.errors import EXIT_FAILED
from exportd.cli.output import FORCE_HELP, OUTPUT_HELP, check_target, save
from exportd.cli.session import WHERE, Jobs, connect, connection_options

if TYPE_CHECKING:
    # The client (httpx) is imported by the commands that use it: `exportd worker` and
    # `exportd serve` register these commands too and never need it.
    from exportd.client import Job

NO_WORKER_HERE = (
    "note: this job store is used in this process, where no worker runs: a queued job "
    "moves when `exportd serve` or `exportd worker` runs on the same store."
)


def parse_labels(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--label key=value` options as a mapping (a later key wins)."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--label")
        labels[key.strip()] = value
    return labels


label_option = click.option(
    "--label",
    "label_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="A label (repeatable).",
)


def echo_json(value: Any) -> None:
    click.echo(orjson.dumps(value).decode())


def job_json(job: Job) -> dict[str, Any]:
    """The job as the API shows it, with the progress and status of this snapshot."""
    return {**job.raw, "status": job.status, "progress": job.progress.__dict__}


def progress_text(job: Job) -> str:
    p = job.progress
    done = f"{p.done:,}/{p.total:,}" if p.total is not None else f"{p.done:,}"
    percent = f" {p.percent:5.1f}%" if p.percent is not None else ""
    return f"{percent} {done} {p.unit}".strip()


ROW = "{id:<36}  {status:<9}  {exporter:<12}  {progress:<28}  {created}"
HEADER = ROW.format(
    id="ID", status="STATUS", exporter="EXPORTER", progress="PROGRESS", created="CREATED"
)


def job_line(job: Job) -> str:
    created = job.created_at.strftime("%Y-%m-%d %H:%M:%S") if job.created_at else ""
    return ROW.format(
        id=job.id,
        status=job.status,
        exporter=job.exporter,
        progress=progress_text(job),
        created=created,
    ).rstrip()


def note_if_local(jobs: Jobs, job: Job) -> None:
    """Say that nothing here runs a queued job of the local store."""
    from exportd.cli.local import LocalJobs

    if isinstance(jobs, LocalJobs) and job.status == "queued":
        click.echo(NO_WORKER_HERE, err=True)


@cli.group(
    short_help="List, show, watch, cancel, retry, download and remove jobs.",
    help=f"Export jobs: list, show, watch, cancel, retry, download, rm.\n\n{WHERE}",
)
def jobs() -> None:
    pass


@jobs.command("list")
@connection_options
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(["queued", "running", "completed", "failed", "cancelled"]),
    help="Only jobs in this status (repeatable).",
)
@click.option("--exporter", default=None, help="Only jobs of this exporter.")
@click.option("--batch", "batch_id", default=None, help="Only jobs of this batch.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--all", "everything", is_flag=True, help="Every matching job, all pages.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of jobs.")
@label_option
def list_jobs(
    url: str | None,
    token: str | None,
    statuses: tuple[str, ...],
    exporter: str | None,
    batch_id: str | None,
    limit: int,
    everything: bool,
    as_json: bool,
    label_pairs: tuple[str, ...],
) -> None:
    """List jobs, newest first (says so when there are none).

    Under a header; with --label, only the jobs carrying every label given."""
    labels = parse_labels(label_pairs)
    with connect(url, token) as client:
        filters: dict[str, Any] = dict(
            status=statuses, exporter=exporter, batch_id=batch_id, label=labels
        )
        if everything:
            found = list(client.iter_jobs(**filters, page_size=200))
        else:
            found = list(client.list(**filters, limit=limit).items)
        where = client.url
    if as_json:
        echo_json([job_json(j) for j in found])
        return
    if not found:
        matching = " matching the filters" if statuses or exporter or batch_id or labels else ""
        click.echo(f"no jobs{matching} ({where})")
        return
    click.echo(HEADER.rstrip())
    for job in found:
        click.echo(job_line(job))


@jobs.command("show")
@connection_options
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="The job as the API's JSON.")
def show(url: str | None, token: str | None, job_id: str, as_json: bool) -> None:
    """Show one job."""
    with connect(url, token) as client:
        job = client.get(job_id)
    if as_json:
        echo_json(job_json(job))
        return
    lines = [
        ("id", job.id),
        ("status", job.status + (" (cancel requested)" if job.cancel_requested else "")),
        ("exporter", job.exporter),
        ("params", orjson.dumps(job.params).decode()),
        ("format", f"{job.format} ({job.compression})"),
        ("attempt", f"{job.attempt} of {job.max_attempts}"),
        (
            "progress",
            progress_text(job) + (f"  {job.progress.message}" if job.progress.message else ""),
        ),
        ("labels", " ".join(f"{k}={v}" for k, v in job.labels.items())),
        ("created", str(job.created_at or "")),
        ("finished", str(job.finished_at or "")),
    ]
    if job.error:
        lines.append(("error", f"{job.error.code}: {job.error.message}"))
    for artifact in job.artifacts:
        lines.append(
            ("file", f"{artifact.name}  {artifact.size:,} bytes  sha256 {artifact.sha256}")
        )
    for key, value in lines:
        click.echo(f"{key:<9} {value}")


@jobs.command("history")
@connection_options
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
def history(url: str | None, token: str | None, job_id: str, as_json: bool) -> None:
    """Show a job's events and who caused each.

    Oldest first: what happened, when, and who caused it (a token's owner/name, or the
    worker)."""
    with connect(url, token) as client:
        for entry in client.iter_history(job_id):
            if as_json:
                echo_json({**entry.__dict__, "at": entry.at.isoformat() if entry.at else None})
                continue
            at = entry.at.strftime("%Y-%m-%d %H:%M:%S") if entry.at else ""
            status = entry.status or ""
            click.echo(f"{entry.id:>8}  {at}  {entry.type:<15} {status:<10} {entry.actor}")


@jobs.command("watch")
@connection_options
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per snapshot.")
@click.option(
    "--stall-timeout", type=float, default=None, help="Give up after N s without progress."
)
@click.option("--timeout", type=float, default=None, help="Give up after N s in all.")
def watch(
    url: str | None,
    token: str | None,
    job_id: str,
    as_json: bool,
    stall_timeout: float | None,
    timeout: float | None,
) -> None:
    """Follow a job until it ends; exit 0 if it completed, 1 otherwise."""
    last: Job | None = None
    with connect(url, token) as client:
        snapshots = client.watch(job_id, stall_timeout=stall_timeout, timeout=timeout)
        for seen, last in enumerate(snapshots):
            if seen == 0 and not as_json:
                note_if_local(client, last)
            if as_json:
                echo_json(job_json(last))
            else:
                message = f"  {last.progress.message}" if last.progress.message else ""
                click.echo(f"{last.status:<9} {progress_text(last)}{message}")
    assert last is not None
    if last.status != "completed":
        if last.error and not as_json:
            click.echo(f"error: {last.error.code}: {last.error.message}", err=True)
        sys.exit(EXIT_FAILED)


@jobs.command("cancel")
@connection_options
@click.argument("job_ids", nargs=-1, required=True)
def cancel(url: str | None, token: str | None, job_ids: tuple[str, ...]) -> None:
    """Cancel jobs (running ones stop at their next checkpoint)."""
    with connect(url, token) as client:
        for job_id in job_ids:
            job = client.cancel(job_id)
            state = (
                "cancel requested" if job.cancel_requested and not job.is_terminal else job.status
            )
            click.echo(f"{job.id}  {state}")


@jobs.command("retry")
@connection_options
@click.argument("job_id")
def retry(url: str | None, token: str | None, job_id: str) -> None:
    """Queue a failed or cancelled job again."""
    with connect(url, token) as client:
        job = client.retry(job_id)
        note_if_local(client, job)
    click.echo(f"{job.id}  {job.status}")


@jobs.command("rm")
@connection_options
@click.argument("job_ids", nargs=-1, required=True)
def remove(url: str | None, token: str | None, job_ids: tuple[str, ...]) -> None:
    """Delete jobs and their files (cancelling them first if needed)."""
    with connect(url, token) as client:
        for job_id in job_ids:
            client.delete(job_id)
            click.echo(f"{job_id}  deleted")


@jobs.command("download")
@connection_options
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(), default=None, help=OUTPUT_HELP)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--name", default=None, help="Which file, for jobs with several.")
def download(
    url: str | None,
    token: str | None,
    job_id: str,
    output: str | None,
    force: bool,
    name: str | None,
) -> None:
    """Download a completed job's file and verify its sha256.

    A transfer broken off resumes from the `.part` file it left.
    """
    target = check_target(output, force=force)
    with connect(url, token) as client:
        result = save(client, client.get(job_id), target, name, lambda _done, _total: None)
    click.echo(f"{result.artifact.size:,} bytes, sha256 verified", err=True)
    if not target.to_stdout:
        click.echo(str(Path(result.path)))
