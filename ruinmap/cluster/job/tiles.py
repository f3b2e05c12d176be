"""The job's tiles: one per store shard, smaller for small scenes (`tile_size`), row by row.

Tiles follow the store's shard grid, and the `score` and `damage` arrays have the same shards
as the tiles, so no two tasks ever write the same shard file and no locks are needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ruinmap.cluster.geo.grid import Grid

__all__ = ["MIN_TILES", "MIN_TILE_PX", "Tile", "plan_tiles", "tile_size"]


@dataclass(frozen=True)
class Tile:
    """One output tile: shard-grid position (iy, ix) and pixel window."""

    iy: int
    ix: int
    row0: int
    col0: int
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"tile/{self.iy}/{self.ix}"

    @property
    def bounds_px(self) -> tuple[int, int, int, int]:
        return self.row0, self.col0, self.row0 + self.height, self.col0 + self.width

    def grid(self, image: Grid) -> Grid:
        """The tile's own grid: its window of the image's grid."""
        return image.window(self.row0, self.col0, self.height, self.width)


#: A scene that the store's shards cut into fewer tiles than this gets smaller tiles, halving
#: down to MIN_TILE_PX: a 4096² city had 4 tiles of 2048 px, so on a workstation all but 4
#: workers sat idle and 2 workers reached 1.30x of one.
MIN_TILES = 16
#: Below this the halo (the largest focal reach, ~17 px for pwtt at 10 m) and the per-task
#: costs grow out of proportion: at 1024 px the halo adds 7 % to the reads, at 512 px 14 %.
MIN_TILE_PX = 1024


def tile_size(height: int, width: int, chunk: int, shard: int) -> int:
    """The side of the job's tiles: the store's shard, halved while the image has fewer than
    MIN_TILES tiles and the half is a multiple of `chunk` and at least MIN_TILE_PX.

    Depends only on the store, never on the cluster, so a resumed job keeps its tiles.
    """
    tile = shard
    while (
        math.ceil(height / tile) * math.ceil(width / tile) < MIN_TILES
        and tile % 2 == 0
        and (tile // 2) % chunk == 0
        and tile // 2 >= max(chunk, MIN_TILE_PX)
    ):
        tile //= 2
    return tile


def plan_tiles(height: int, width: int, tile_px: int) -> list[Tile]:
    """Tiles of `tile_px` square covering the image, row by row; edge tiles are smaller."""
    return [
        Tile(iy, ix, iy * tile_px, ix * tile_px,
             min(tile_px, height - iy * tile_px), min(tile_px, width - ix * tile_px))
        for iy in range(math.ceil(height / tile_px))
        for ix in range(math.ceil(width / tile_px))
    ]  # fmt: skip
