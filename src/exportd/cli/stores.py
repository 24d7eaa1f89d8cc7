"""Which job store a command opens, said out loud: every command that opens the store
itself (not through a server) prints it on stderr, and warns when it has just created
a new, empty SQLite file (a token or an export there is invisible to a server started
in another directory)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from exportd.config import Settings

if TYPE_CHECKING:
    from exportd.runtime import Runtime


@dataclass(frozen=True)
class StoreLocation:
    """Where the job store of some settings is, in words, and whether it exists yet."""

    text: str
    sqlite_file: Path | None

    @classmethod
    def of(cls, settings: Settings) -> StoreLocation:
        from sqlalchemy.engine import make_url

        url = make_url(settings.resolved_database_url())
        if url.get_backend_name() != "sqlite":
            return cls(url.render_as_string(hide_password=True), None)
        database = url.database or ""
        if database in ("", ":memory:"):
            return cls("an in-memory SQLite database", None)
        path = Path(database).resolve()
        return cls(f"SQLite file {path}", path)

    @property
    def exists(self) -> bool:
        return self.sqlite_file is None or self.sqlite_file.exists()


def open_runtime(
    settings: Settings | None = None,
    *,
    apps: Iterable[str] = (),
    migrate: bool = True,
    announce: bool = True,
    note: str = "",
    via_log: bool = False,
) -> Runtime:
    """`Runtime.open`, telling on stderr which store it opened (unless not `announce`)
    and warning when that store did not exist before; `note` is added in parentheses.
    `via_log` says it through the `exportd` logger instead (a long-running process whose
    stderr is its log, JSON lines when EXPORTD_LOG_FORMAT=json)."""
    from exportd.runtime import Runtime

    settings = settings or Settings()
    where = StoreLocation.of(settings)
    new = not where.exists
    runtime = Runtime.open(settings, apps=apps, migrate=migrate)
    if announce and via_log:
        log_store(where, new=new)
    elif announce:
        say_store(where, new=new, note=note)
    return runtime


NEW_STORE_WARNING = (
    "there was no job store here; a new, empty one was created. A server started "
    "elsewhere (another directory, EXPORTD_HOME or EXPORTD_DATABASE_URL) does not see it."
)


def log_store(where: StoreLocation, *, new: bool) -> None:
    log = logging.getLogger("exportd")
    log.info("job store: %s", where.text, extra={"store": where.text})
    if new:
        log.warning(NEW_STORE_WARNING, extra={"store": where.text})


def say_store(where: StoreLocation, *, new: bool, note: str = "") -> None:
    click.echo(f"job store: {where.text}" + (f" ({note})" if note else ""), err=True)
    if new:
        click.echo(f"warning: {NEW_STORE_WARNING}", err=True)
