"""One progress bar style for every CLI (rich), quiet when output is not a terminal."""
from __future__ import annotations

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 160)


@contextlib.contextmanager
def progress_bar(total: int, description: str):
    """Yield `advance(n=1)`; draws a bar on a terminal and a start/end line elsewhere (logs, CI)."""
    if not sys.stdout.isatty():
        console.print(f"{description}: {total} ...")
        yield lambda n=1: None
        console.print(f"{description}: done")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
