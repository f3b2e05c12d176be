"""A progress bar over Dask futures, drawn with rich on stderr only when it is a terminal."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from distributed import Future, as_completed
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ruinmap.cluster.compute.phases import progress_enabled

__all__ = ["progress_enabled", "track"]


def track(
    futures: Sequence[Future], description: str, *, enabled: bool | None = None
) -> Iterator[Future]:
    """Yield `futures` as they finish, advancing a progress bar when enabled.

    The bar counts finished futures, failed ones included: the caller sees the failure
    when it asks the yielded future for its result. Once the caller has taken it (the next
    iteration), a future is released: the scheduler then forgets its task, so the loss of a
    worker never recomputes finished work (a tile rewriting its shard while later steps read
    it, say).
    """
    if not futures:
        return
    if not progress_enabled(enabled):
        for future in as_completed(futures):
            yield future
            future.release()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=len(futures))
        for future in as_completed(futures):
            bar.advance(task)
            yield future
            future.release()
