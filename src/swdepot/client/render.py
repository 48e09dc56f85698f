"""What the CLI shows: tables and progress bars on a terminal, plain text or JSON otherwise.

Progress bars go to stderr and only when stderr is a terminal, so piping or
capturing the output never collects escape codes; ``--json`` prints exactly one
JSON document on stdout, for scripts.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

PLAIN_WIDTH = 200  # tables written to a pipe are not wrapped at 80 columns


class SpeedColumn(ProgressColumn):
    """The speed the service measured (``speed`` field), else rich's own estimate."""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("speed") or task.speed
        return Text(f"{human_bytes(speed)}/s" if speed else "?/s", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left at the current speed."""

    def render(self, task: Task) -> Text:
        speed = task.fields.get("speed") or task.speed
        if not speed or task.total is None:
            return Text("ETA -:--:--", style="progress.remaining")
        left = max(0.0, (task.total - task.completed) / speed)
        return Text(f"ETA {timedelta(seconds=int(left))}", style="progress.remaining")


class Transfer:
    """A progress bar for one transfer, drawn from its first byte count on.

    Without a ``factory`` (output not a terminal) it does nothing; a job that never
    reports bytes (a delete) never shows an empty bar.
    """

    def __init__(self, factory: Callable[[], Progress] | None, description: str,
                 console: Console | None = None) -> None:
        self._factory = factory
        self._description = description
        self._console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def note(self, text: str) -> None:
        """A line above the bar (or alone, before the first byte): what the job says."""
        if self._factory is None or self._console is None:
            return
        console = self._progress.console if self._progress is not None else self._console
        console.print(f"{self._description}: {text}", markup=False, style="yellow")

    def update(self, done: int | None, total: int | None, speed: float | None = None) -> None:
        if self._factory is None:
            return
        if self._progress is None or self._task is None:
            self._progress = self._factory()
            self._progress.start()
            self._task = self._progress.add_task(self._description, total=None)
        self._progress.update(self._task, completed=done or 0, total=total, speed=speed)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class Output:
    """Where and how a command writes; built once per command from ``--json``."""

    def __init__(self, *, json_mode: bool, stdout: TextIO | None = None,
                 stderr: TextIO | None = None) -> None:
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.console = Console(file=self.stdout, width=None if _tty(self.stdout)
                               else PLAIN_WIDTH, highlight=False)
        self.err = Console(file=self.stderr, highlight=False)
        self.interactive = not json_mode and _tty(self.stderr)

    def json(self, value: Any) -> None:
        self.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
        self.stdout.flush()

    def line(self, text: str) -> None:
        """A line of human output (suppressed in JSON mode, where one document is printed)."""
        if not self.json_mode:
            self.console.print(text, markup=False, soft_wrap=True)

    def error(self, text: str) -> None:
        self.err.print(f"swdepot: error: {text}", markup=False, soft_wrap=True,
                       style="red" if _tty(self.stderr) else None)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
              empty: str) -> None:
        if not rows:
            self.line(empty)
            return
        table = Table(*columns, box=None, pad_edge=False, header_style="bold")
        for row in rows:
            table.add_row(*("-" if cell is None else str(cell) for cell in row))
        self.console.print(table)

    def fields(self, pairs: Sequence[tuple[str, Any]]) -> None:
        """ONTAP's ``-instance`` view: one ``Label: value`` per line."""
        width = max(len(label) for label, _ in pairs)
        for label, value in pairs:
            self.line(f"{label.rjust(width)}: {'-' if value is None else value}")

    @contextlib.contextmanager
    def transfer(self, description: str) -> Iterator[Transfer]:
        bar = Transfer(self._progress if self.interactive else None, description, self.err)
        try:
            yield bar
        finally:
            bar.close()

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[progress.description]{task.description}"), BarColumn(),
            TaskProgressColumn(), DownloadColumn(binary_units=True), SpeedColumn(), EtaColumn(),
            console=self.err, transient=False, refresh_per_second=8,
        )


def human_bytes(value: float | None) -> str:
    """1536 → ``1.5 KiB``: binary units, as ``ls -h`` and ONTAP's size columns use."""
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
