"""One status line per phase of a command (reading inputs, starting the cluster, planning,
merging, writing products), so a terminal is never silent between the progress bars.

On a terminal each phase shows a spinner with its elapsed time while it runs and leaves one
line (`✓ writing products  2.1 s`) when it ends; elsewhere (a log file, the job service, a
test) nothing is drawn and the phase is logged at DEBUG. Imports only rich, so a command can
show its first line before the heavy imports (dask, numba, GDAL) have finished.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

__all__ = ["phase", "progress_enabled"]

log = logging.getLogger(__name__)


def progress_enabled(requested: bool | None = None) -> bool:
    """`requested` when given, else whether stderr is an interactive terminal."""
    if requested is not None:
        return requested
    return sys.stderr.isatty()


@contextlib.contextmanager
def phase(description: str, *, enabled: bool | None = None) -> Iterator[None]:
    """Show `description` with a spinner for the block; one line with its time at the end.

    A phase that fails leaves no tick: the error the command prints is what the user reads.
    """
    log.debug("%s ...", description)
    if not progress_enabled(enabled):
        yield
        return
    console = Console(stderr=True)
    started = time.perf_counter()
    spinner = Progress(SpinnerColumn(), TextColumn("{task.description} ..."),
                       TimeElapsedColumn(), console=console, transient=True,
                       redirect_stdout=False, redirect_stderr=False)
    with spinner:
        spinner.add_task(description, total=None)
        yield
    console.print(f"[green]✓[/green] {description}  [dim]{time.perf_counter() - started:.1f} s"
                  "[/dim]", highlight=False)
