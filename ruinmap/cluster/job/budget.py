"""A job's budget: the most pixels, dates and tasks one job may ask for (the job service's
`[jobs]` settings), checked on the imagery's headers before any pixel moves.

A shared service must not let one request occupy its cluster for days: a header claiming
10^6 x 10^6 pixels, or thousands of dates, is refused with the limit it broke and the setting
that raises it. The tasks counted are those the job would send: one ingest task per shard and
date (none for an ingested store) and one tile task per tile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ruinmap.cluster.job.preflight import ImageryHeader
from ruinmap.cluster.job.tiles import tile_size
from ruinmap.errors import SpecError

__all__ = ["JobBudget", "check_budget", "planned_tasks"]


@dataclass(frozen=True)
class JobBudget:
    """The limits of one job; `setting` names where they are configured, for the error."""

    max_pixels: int  # pixels of one date (the grid's width x height)
    max_dates: int  # pre- and post-event dates together
    max_tasks: int  # ingest and tile tasks together
    setting: str = "the service's [jobs] settings"


def planned_tasks(header: ImageryHeader) -> int:
    """The Dask tasks a job on `header` sends: ingest shards x dates (none for an ingested
    store), then one per tile."""
    grid = header.grid
    tile = tile_size(grid.height, grid.width, header.chunk, header.shard)
    tiles = math.ceil(grid.height / tile) * math.ceil(grid.width / tile)
    if header.ingested:
        return tiles
    shards = math.ceil(grid.height / header.shard) * math.ceil(grid.width / header.shard)
    return shards * sum(header.n_dates.values()) + tiles


def check_budget(budget: JobBudget, header: ImageryHeader) -> None:
    """SpecError naming the first limit of `budget` the job on `header` would break."""
    grid = header.grid
    pixels = grid.width * grid.height
    dates = sum(header.n_dates.values())
    tasks = planned_tasks(header)
    for what, have, limit, key in (
        (f"a grid of {grid.width} x {grid.height} px ({pixels:,} pixels a date)", pixels,
         budget.max_pixels, "max_pixels"),
        (f"{dates:,} dates ({header.n_dates['pre']} pre, {header.n_dates['post']} post)",
         dates, budget.max_dates, "max_dates"),
        (f"{tasks:,} tasks (ingest shards x dates, and tiles)", tasks, budget.max_tasks,
         "max_tasks"),
    ):
        if have > limit:
            raise SpecError(
                f"the job asks for {what}, more than this service allows a job "
                f"({key} = {limit:,} in {budget.setting}); crop the imagery (a smaller area "
                "or fewer dates) or split the job, or ask the operator to raise the limit"
            )
