"""How `exportd export` shows progress on stderr. On a terminal: rich's live display, a
line for the export and one for saving the file, each fitted to the terminal's width
(`lines.fit`) and redrawn at most `REFRESH_PER_SECOND` times a second however often it
is updated. Elsewhere (a pipe, a file, `TERM=dumb`): a short plain line on each change
of status or attempt, and at most one more every `LINE_INTERVAL` seconds.

Imported by the commands that show progress, when they run (rich is not loaded by
`exportd worker` or `exportd serve`)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.progress import Progress, ProgressColumn, Task, TaskID
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from exportd.cli.lines import Line, fit, job_line, plain, transfer_line

if TYPE_CHECKING:
    from exportd.client import Job

REFRESH_PER_SECOND = 5
LINE_INTERVAL = 10.0


class Display:
    """The quiet display (`--quiet`), and the base of the others: says nothing."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        """A message on a line of its own."""

    def job(self, job: Job) -> None:
        """A new snapshot of the job."""

    def transfer(self, done: int, total: int | None) -> None:
        """Bytes of the file saved so far."""

    def close(self) -> None:
        """End the display (its last state stays on screen)."""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Display:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_display(stream: TextIO, *, quiet: bool = False) -> Display:
    """The display that suits `stream`."""
    if quiet:
        return Display(stream)
    if stream.isatty() and os.environ.get("TERM") != "dumb":
        return LiveDisplay(stream)
    return LineDisplay(stream)


class LineDisplay(Display):
    def __init__(self, stream: TextIO, *, interval: float = LINE_INTERVAL) -> None:
        super().__init__(stream)
        self.interval = interval
        self._last: tuple[str, int] | None = None
        self._last_time = 0.0

    def say(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def job(self, job: Job) -> None:
        key = (job.status, job.attempt)
        now = time.monotonic()
        if key == self._last and now - self._last_time < self.interval:
            return
        self._last, self._last_time = key, now
        elapsed = self.elapsed() if job.is_terminal else None
        self.say(plain(job_line(job, elapsed=elapsed)))


class LiveDisplay(Display):
    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.console = Console(file=stream, highlight=False)
        self.progress: Progress = Progress(
            LineColumn(),
            console=self.console,
            refresh_per_second=REFRESH_PER_SECOND,
            redirect_stdout=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._saving_since: float | None = None

    def say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def job(self, job: Job) -> None:
        elapsed = self.elapsed() if job.is_terminal else None
        self._show("job", lambda: job_line(job, elapsed=elapsed))

    def transfer(self, done: int, total: int | None) -> None:
        if self._saving_since is None:
            self._saving_since = time.monotonic()
        finished = total is not None and done >= total
        elapsed = time.monotonic() - self._saving_since if finished else None
        self._show("save", lambda: transfer_line(done, total, elapsed=elapsed))

    def _show(self, name: str, line: Callable[[], Line]) -> None:
        """Set what the line `name` shows; rich redraws it at its own pace."""
        if not self._tasks:
            self.progress.start()
        if name not in self._tasks:
            self._tasks[name] = self.progress.add_task(name, total=None, line=line)
        else:
            self.progress.update(self._tasks[name], line=line)

    def close(self) -> None:
        if self._tasks:
            self.progress.stop()
            self._tasks.clear()


class LineColumn(ProgressColumn):
    """The one column of the live display: the task's line, fitted to the width."""

    def render(self, task: Task) -> FittedLine:
        return FittedLine(task.fields["line"]())


class FittedLine:
    """A `Line` rendered in the width rich offers it, with rich's progress bar."""

    def __init__(self, line: Line) -> None:
        self.line = line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        layout = fit(self.line, options.max_width)
        if not layout.bar:
            yield Text(layout.after, no_wrap=True, overflow="ellipsis")
            return
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(width=layout.bar)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        bar = ProgressBar(total=100.0, completed=self.line.percent or 0.0, width=layout.bar)
        grid.add_row(Text(layout.before), bar, Text(layout.after))
        yield grid
