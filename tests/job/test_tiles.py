"""The job's tile grid: smaller tiles for small scenes, never off the chunk grid."""

from __future__ import annotations

import numpy as np
import pytest

from ruinmap.cluster.job.tiles import MIN_TILE_PX, MIN_TILES, plan_tiles, tile_size


@pytest.mark.parametrize(
    ("height", "width", "chunk", "shard", "expected"),
    [
        (4096, 4096, 512, 2048, 1024),  # 4 shards -> 16 tiles of 1024
        (8192, 8192, 512, 2048, 2048),  # 16 shards already
        (16384, 16384, 512, 2048, 2048),
        (4096, 4096, 512, 4096, 1024),
        (3000, 9000, 512, 2048, 1024),  # 2 x 5 shards -> 3 x 9 tiles
        (256, 256, 512, 2048, 1024),  # never below MIN_TILE_PX
        (500, 500, 32, 96, 96),  # the half (48) is off the chunk grid
        (4096, 4096, 768, 3072, 1536),  # halves stay multiples of the chunk
    ],
)
def test_tile_size(height: int, width: int, chunk: int, shard: int, expected: int) -> None:
    tile = tile_size(height, width, chunk, shard)
    assert tile == expected
    assert tile % chunk == 0 and shard % tile == 0
    halved = tile // 2
    n_tiles = -(-height // tile) * -(-width // tile)
    # it stopped for a reason: enough tiles, or the half would break a rule
    assert (
        (tile == shard and n_tiles >= MIN_TILES)
        or n_tiles >= MIN_TILES
        or halved < max(chunk, MIN_TILE_PX)
        or halved % chunk != 0
        or tile % 2 != 0
    )


@pytest.mark.parametrize(("height", "width", "tile"), [(4096, 4096, 1024), (1000, 2500, 512),
                                                      (1, 1, 1024), (1025, 3, 1024)])
def test_plan_tiles_cover_the_image_once(height: int, width: int, tile: int) -> None:
    cover = np.zeros((height, width), np.int32)
    for t in plan_tiles(height, width, tile):
        cover[t.row0 : t.row0 + t.height, t.col0 : t.col0 + t.width] += 1
    assert (cover == 1).all()
