"""`exportd export`: run one export and save its file, on a server (`--url`) or in this
process on the local job store (`cli.local`).

Exit codes: 0 the file is saved and verified; 1 the export failed, or the server could
not be reached; 2 bad usage (including params the exporter rejects and an output that
cannot be written, both refused before any job is created); 130 interrupted (the job is
cancelled first).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from exportd.cli import app_option, cli
from exportd.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED
from exportd.cli.jobs import label_option, parse_labels
from exportd.cli.lines import duration
from exportd.cli.output import FORCE_HELP, OUTPUT_HELP, Target, check_target, save
from exportd.cli.session import connect, connection_options

if TYPE_CHECKING:
    # The client (httpx) and rich are imported where they are used: `exportd worker`
    # and `exportd serve` register this command too and never need them.
    from exportd.cli.progress import Display
    from exportd.cli.session import Jobs
    from exportd.client import Job

FORMAT_NAMES = ("csv", "tsv", "ndjson", "json", "parquet", "xlsx", "html", "markdown", "pdf")
"""`exportd.formats.FORMATS`, named here so that `--help` need not load the writers."""
COMPRESSION_NAMES = ("none", "gzip", "zstd", "brotli")

EXAMPLES = """\b
Examples:
  exportd export synthetic -p rows=1000000 -c gzip -o orders.csv.gz
  exportd export synthetic -p rows=5 -p seed=7 -f ndjson -o -
  exportd export sql -p source=shop -p query=orders_since \\
      -p params.since=2024-01-01 -f parquet -o out/
  exportd export document -p template=report -p title=Q3 -f pdf -o q3.pdf
  EXPORTD_URL=http://127.0.0.1:8000 EXPORTD_TOKEN=exd_... \\
      exportd export synthetic -p rows=1000000

`exportd exporters` lists the exporters, their params and formats.
"""


@dataclass(frozen=True)
class Order:
    """What `exportd export` was asked for."""

    exporter: str
    params: dict[str, Any]
    format: str
    compression: str
    name: str | None
    timeout: float | None
    stall_timeout: float | None
    labels: dict[str, str]


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


@cli.command("export", epilog=EXAMPLES, short_help="Run an export and save its file.")
@click.argument("exporter")
@click.option(
    "-p", "--param", "pairs", multiple=True, metavar="KEY=VALUE", help="A param (repeatable)."
)
@click.option("--params-json", default=None, metavar="JSON", help="Params as one JSON object.")
@click.option(
    "-f",
    "--format",
    "format_",
    type=click.Choice(FORMAT_NAMES),
    default="csv",
    show_default=True,
    help="Tabular exporters write all but pdf; document exporters html, markdown, pdf.",
)
@click.option(
    "-c",
    "--compression",
    type=click.Choice(COMPRESSION_NAMES),
    default="none",
    show_default=True,
)
@click.option("-o", "--output", type=click.Path(), default=None, help=OUTPUT_HELP)
@click.option("--force", is_flag=True, help=FORCE_HELP)
@click.option("--name", default=None, help="Which file to save, for exports with several.")
@click.option("--timeout", type=float, default=None, help="Give up after N seconds.")
@click.option(
    "--stall-timeout", type=float, default=None, help="Give up after N s without progress."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress display; errors only.")
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
    force: bool,
    name: str | None,
    timeout: float | None,
    stall_timeout: float | None,
    quiet: bool,
    label_pairs: tuple[str, ...],
    url: str | None,
    token: str | None,
    apps: tuple[str, ...],
) -> None:
    """Run EXPORTER, show its progress, save and verify its file, print where it is.

    With --url (or EXPORTD_URL) the export runs on that server; without, in this process
    on the local job store (EXPORTD_HOME, ./.exportd, or EXPORTD_DATABASE_URL), where
    --app loads more exporters. Progress goes to stderr, the file's path to stdout.
    Ctrl-C cancels the export before exiting with 130.
    """
    from exportd.cli.progress import open_display

    order = Order(
        exporter,
        parse_params(pairs, params_json),
        format_,
        compression,
        name,
        timeout,
        stall_timeout,
        parse_labels(label_pairs),
    )
    target = check_target(output, force=force)
    with connect(url, token, apps=apps) as jobs, open_display(sys.stderr, quiet=quiet) as shown:
        path = run(jobs, order, target, shown)
    if path is not None:
        click.echo(str(path))


def run(jobs: Jobs, order: Order, target: Target, display: Display) -> Path | None:
    """Create, follow and save the export: the saved file (None for stdout)."""
    job: Job | None = None
    try:
        job = jobs.create(
            order.exporter,
            order.params,
            format=order.format,
            compression=order.compression,
            labels=order.labels,
        )
        display.say(f"export {job.id} {_where(jobs)}")
        watching = jobs.watch(job.id, stall_timeout=order.stall_timeout, timeout=order.timeout)
        for job in watching:
            display.job(job)
        _check_completed(job, display)
        result = save(jobs, job, target, order.name, display.transfer)
    except KeyboardInterrupt:
        _interrupted(jobs, job, display)
    display.close()
    place = "stdout" if target.to_stdout else str(result.path)
    display.say(
        f"saved {result.artifact.size:,} bytes in {duration(display.elapsed())}, "
        f"sha256 verified: {place}"
    )
    return None if target.to_stdout else result.path


def _where(jobs: Jobs) -> str:
    from exportd.cli.local import LocalJobs

    return "running in this process" if isinstance(jobs, LocalJobs) else f"queued on {jobs.url}"


def _check_completed(job: Job, display: Display) -> None:
    if job.status == "completed":
        return
    display.close()
    reason = f"{job.error.code}: {job.error.message}" if job.error else job.status
    attempts = f" after {job.attempt} attempt{'s' if job.attempt != 1 else ''}"
    click.echo(f"error: export {job.id} {job.status}{attempts}: {reason}", err=True)
    sys.exit(EXIT_FAILED)


def _interrupted(jobs: Jobs, job: Job | None, display: Display) -> NoReturn:
    from exportd.client import ClientError

    display.close()
    if job is not None and not job.is_terminal:
        click.echo(f"interrupted: cancelling export {job.id}", err=True)
        try:
            jobs.cancel(job.id)
        except (ClientError, KeyboardInterrupt) as exc:
            click.echo(f"could not cancel {job.id}: {exc}", err=True)
    else:
        click.echo("interrupted", err=True)
    sys.exit(EXIT_INTERRUPTED)
