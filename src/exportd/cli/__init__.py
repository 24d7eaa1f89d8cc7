"""The `exportd` command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from exportd.config import Settings
from exportd.errors import ExportdError

if TYPE_CHECKING:
    from exportd.observability import ObservabilitySettings

__all__ = ["main"]


def _apps_from_here(
    _ctx: click.Context, _param: click.Parameter, apps: tuple[str, ...]
) -> tuple[str, ...]:
    """`--app` imports from the current directory, as `python -m` and other tools do
    (the `exportd` script's own directory is first on `sys.path` otherwise); a module
    that does not import is a usage error, told now."""
    if not apps:
        return apps
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    from exportd.exporters import load_app

    for target in apps:
        try:
            load_app(target)
        except (ImportError, AttributeError) as exc:
            raise click.BadParameter(f"cannot import {target!r}: {exc}") from None
    return apps


app_option = click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="MODULE[:OBJECT]",
    callback=_apps_from_here,
    help="Import this module (from the current directory or sys.path) so its @exporter "
    "functions register (repeatable).",
)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _logging(verbose: bool) -> ObservabilitySettings:
    """Route every log line through structlog (`EXPORTD_LOG_FORMAT`, `EXPORTD_LOG_LEVEL`;
    `-v` is DEBUG); returns the observability settings."""
    import pydantic

    from exportd.observability import ObservabilitySettings, configure_logging

    try:
        observability = ObservabilitySettings()
    except pydantic.ValidationError as exc:
        raise click.ClickException(f"invalid setting: {exc}") from None
    configure_logging(observability.log_format, "DEBUG" if verbose else observability.log_level)
    return observability


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="exportd")
def cli() -> None:
    """exportd: durable background export jobs.

    \b
    Start here:
      exportd exporters                          what can be exported, with its params
      exportd export synthetic -p rows=1000      export in this process, no server needed
      exportd serve                              run the server (it prints an admin token)
      export EXPORTD_URL=http://127.0.0.1:8000 EXPORTD_TOKEN=exd_...
      exportd export synthetic -p rows=1000      the same export, on the server
      exportd jobs list                          the jobs (on the server, or the local store)
    """


@cli.command()
@click.option("--host", default=None, help="Address to bind [env EXPORTD_HOST, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to bind [env EXPORTD_PORT, 8000].")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Worker slots in this process [env EXPORTD_CONCURRENCY, 2].",
)
@click.option("--no-workers", is_flag=True, help="Serve the API only; run `exportd worker` apart.")
@click.option(
    "--grace",
    type=float,
    default=None,
    help="Seconds running jobs get to finish on shutdown [env EXPORTD_GRACE_SECONDS, 10].",
)
@app_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def serve(
    host: str | None,
    port: int | None,
    concurrency: int | None,
    no_workers: bool,
    grace: float | None,
    apps: tuple[str, ...],
    verbose: bool,
) -> None:
    """Run the HTTP API, with worker slots unless --no-workers.

    The database (EXPORTD_DATABASE_URL) and artifact storage (EXPORTD_STORAGE_URL) default
    to a SQLite file and a folder under EXPORTD_HOME (./.exportd). The schema is migrated
    on start.
    """
    import uvicorn

    from exportd.api import create_app
    from exportd.cli.stores import StoreLocation
    from exportd.exporters.sources import check_sources_at_start
    from exportd.observability.logs import resolve_format
    from exportd.runtime import Runtime

    observability = _logging(verbose)
    settings = _settings(host=host, port=port, concurrency=concurrency, grace_seconds=grace)
    new = not StoreLocation.of(settings).exists
    runtime = Runtime.open(settings, apps=apps)
    token = runtime.bootstrap_admin_token()
    slots = 0 if no_workers else settings.concurrency
    if resolve_format(observability.log_format, sys.stderr) == "json":
        _banner_line(runtime, token, slots)
    else:
        _banner(runtime, token, slots, new_store=new)
    check_sources_at_start(settings)
    app = create_app(runtime, workers=not no_workers, observability=observability)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through exportd's logging too
        access_log=False,  # exportd logs each request itself, with its request id
        proxy_headers=False,  # X-Forwarded-*: only from EXPORTD_TRUSTED_PROXIES (web sessions)
    )


def _banner_line(runtime: Any, token: str | None, slots: int) -> None:
    """The banner as one log line, for JSON logs (the admin token, if one was created,
    is in `admin_token`: shown only this once)."""
    settings = runtime.settings
    fields = {
        "url": f"http://{settings.host}:{settings.port}",
        "job_store": runtime.store.engine.url.render_as_string(hide_password=True),
        "artifacts": settings.resolved_storage_url(),
        "worker_slots": slots,
    }
    if token:
        fields["admin_token"] = token
    logging.getLogger("exportd").info("exportd is serving", extra=fields)


def _banner(runtime: Any, token: str | None, slots: int, *, new_store: bool = False) -> None:
    settings = runtime.settings
    url = f"http://{settings.host}:{settings.port}"
    database = runtime.store.engine.url.render_as_string(hide_password=True)
    lines = [
        f"exportd is serving on {url}  (API docs: {url}/docs)",
        f"  job store: {database}" + ("  (new: created now)" if new_store else ""),
        f"  artifacts: {settings.resolved_storage_url()}",
        f"  worker slots in this process: {slots}",
    ]
    if token:
        lines += [
            "",
            "An admin token was created (it is shown only this once):",
            f"  {token}",
            "",
            "Try it:",
            f"  export EXPORTD_URL={url} EXPORTD_TOKEN={token}",
            "  exportd export synthetic -p rows=1000000 --compression gzip -o orders.csv.gz",
            '  curl -H "Authorization: Bearer $EXPORTD_TOKEN" $EXPORTD_URL/v1/exports',
        ]
    else:
        lines += ["", "Create a token with: exportd token create --owner NAME"]
    click.echo("\n".join(lines), err=True)


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=None,
    help="Jobs run at once by this process [env EXPORTD_CONCURRENCY, 2].",
)
@click.option(
    "--grace",
    type=float,
    default=None,
    help="Seconds running jobs get to finish on SIGTERM/SIGINT before their leases are "
    "released [env EXPORTD_GRACE_SECONDS, 10].",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics on this port [env EXPORTD_METRICS_PORT].",
)
@click.option(
    "--metrics-host",
    default=None,
    help="Address of the metrics port [env EXPORTD_METRICS_HOST, 127.0.0.1].",
)
@app_option
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def worker(
    concurrency: int | None,
    grace: float | None,
    metrics_port: int | None,
    metrics_host: str | None,
    apps: tuple[str, ...],
    verbose: bool,
) -> None:
    """Claim and run export jobs until SIGTERM or SIGINT.

    A worker also sends webhooks and e-mail (the outbox) and sweeps leftovers.

    Lease length, owner cap, retry backoff and polling come from EXPORTD_LEASE_SECONDS,
    EXPORTD_OWNER_RUNNING_CAP, EXPORTD_RETRY_BASE_SECONDS, EXPORTD_RETRY_CAP_SECONDS and
    EXPORTD_POLL_INTERVAL.
    """
    from exportd.cli.stores import open_runtime
    from exportd.exporters.sources import check_sources_at_start

    observability = _logging(verbose)
    settings = _settings(concurrency=concurrency, grace_seconds=grace)
    runtime = open_runtime(settings, apps=apps, migrate=False, via_log=True)
    check_sources_at_start(settings)
    port = metrics_port if metrics_port is not None else observability.metrics_port
    if port is not None:
        _serve_metrics(metrics_host or observability.metrics_host, port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("exportd").info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.start_worker()
    runtime.start_deliverer()
    while not stop.wait(0.5):
        pass
    runtime.close()


def _serve_metrics(host: str, port: int) -> None:
    """This worker's metrics at `http://host:port/metrics`, from a daemon thread."""
    from exportd.observability.metrics import serve

    try:
        server, _ = serve(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from None
    where = f"http://{host}:{server.server_port}/metrics"
    logging.getLogger("exportd").info("serving metrics on %s", where, extra={"metrics": where})


@cli.command()
def migrate() -> None:
    """Bring the job store schema (EXPORTD_DATABASE_URL) up to date."""
    from exportd.cli.stores import StoreLocation, say_store
    from exportd.store import open_store

    settings = Settings()
    where = StoreLocation.of(settings)
    new = not where.exists
    settings.ensure_home()
    store = open_store(settings.resolved_database_url())
    store.migrate()
    say_store(where, new=new)
    click.echo(f"schema is current ({store.engine.url.render_as_string(hide_password=True)})")


@cli.command(short_help="Sweep leftover files, expired exports and old jobs once.")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Age in seconds before a leftover file counts as garbage "
    "[env EXPORTD_SWEEP_GRACE_SECONDS, 900].",
)
def cleanup(dry_run: bool, grace: float | None) -> None:
    """Sweep once: partial files of attempts that are no longer running, files no export
    refers to, rows whose files are gone, the files of expired exports, jobs past their
    retention and old progress events (`exportd serve` and every worker also sweep on
    their own); for cron, or after a crash."""
    from exportd.cli.stores import open_runtime

    runtime = open_runtime(_settings(sweep_grace_seconds=grace))
    report = runtime.sweeper().sweep(force=True, dry_run=dry_run)
    click.echo(report.summary(dry_run))
    if report.skipped:
        click.echo(f"skipped (another process is sweeping): {', '.join(report.skipped)}")


@cli.group(short_help="Create, list and revoke API tokens.")
def token() -> None:
    """Create, list and revoke API tokens, in the job store opened here: the SQLite file
    under EXPORTD_HOME (./.exportd), or EXPORTD_DATABASE_URL. A server accepts the
    tokens of the store it uses, so run these where `exportd serve` runs, with the same
    settings; each command says which store it used."""


def _store() -> Any:
    from exportd.cli.stores import open_runtime

    return open_runtime().store


@token.command("create")
@click.option("--owner", required=True, help="The owner whose jobs the token sees.")
@click.option("--admin", is_flag=True, help="The token sees and acts on every owner's jobs.")
@click.option("--name", default=None, help="A note to recognise the token by.")
def token_create(owner: str, admin: bool, name: str | None) -> None:
    """Print a new token. It is shown once; only its hash is stored."""
    created, secret = _store().create_token(owner, admin=admin, name=name)
    click.echo(
        f"created token {created.id} for owner {owner!r}{' (admin)' if admin else ''}", err=True
    )
    click.echo(secret)


@token.command("list")
@click.option("--owner", default=None)
@click.option("--json", "as_json", is_flag=True)
def token_list(owner: str | None, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    import orjson

    tokens = _store().list_tokens(owner)
    if as_json:
        rows = [
            {
                **t.__dict__,
                "created_at": t.created_at.isoformat(),
                "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
            }
            for t in tokens
        ]
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for t in tokens:
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M}" if t.revoked_at else "active"
        kind = "admin" if t.admin else "owner"
        click.echo(f"{t.id}  {t.owner:<20} {kind:<6} {state:<24} {t.name or ''}")


@token.command("revoke")
@click.argument("token_id")
def token_revoke(token_id: str) -> None:
    """Revoke a token by id; requests with it get 401 from then on."""
    from exportd.errors import JobNotFound

    try:
        revoked = _store().revoke_token(token_id)
    except JobNotFound:
        raise click.ClickException(f"no token {token_id}") from None
    click.echo(f"revoked token {revoked.id} of owner {revoked.owner!r}")


from exportd.cli import export, exporters, jobs  # noqa: E402, F401  (they register their commands)


def main() -> None:
    # Arrow's allocator, set before pyarrow loads (a user's choice wins). jemalloc
    # returns freed pages and keeps Arrow's buffers out of the C heap, which the Parquet
    # writer otherwise fragments: peak RSS of a worker writing 10M rows to Parquet is
    # 164 MB with it, 186 MB with the system allocator, 184 MB with mimalloc (Arrow's
    # default). Wheels for other systems may lack jemalloc: they use the system one.
    pool = "jemalloc" if sys.platform == "linux" else "system"
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", pool)
    try:
        cli(standalone_mode=True)
    except ExportdError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
