"""One progress bar style for every CLI (rich), quiet when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(highlight=False, soft_wrap=True, markup=False, width=None if sys.stdout.isatty() else 160)


@contextlib.contextmanager
def progress_bar(total: int, description: str):
    """Yield `advance(n=1)`; draws a bar on a terminal and a start/end line elsewhere (logs, CI)."""
    if not sys.stdout.isatty():  # a log file: a line at each tenth, never a redrawn bar
        console.print(f"{description}: {total} ...")
        done, start = [0], time.perf_counter()

        def advance(n=1):
            before, done[0] = done[0], done[0] + n
            if total and (10 * done[0]) // total > (10 * before) // total and done[0] < total:
                console.print(f"{description}: {done[0]}/{total} in {time.perf_counter() - start:.0f} s")

        yield advance
        console.print(f"{description}: done in {time.perf_counter() - start:.0f} s")
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
