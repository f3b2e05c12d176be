"""The layout of pwtt's kept moments (`job.score_state`): inner chunks small enough that an
appended tile, which reads its neighbours' moments a few pixels past its edge, decodes little
more than its own, and always a divisor of the tile (their shard)."""

from __future__ import annotations

import pytest

from ruinmap.cluster.job.score_state import MOMENT_CHUNK_MAX, moment_chunk


@pytest.mark.parametrize(("tile_px", "chunk", "expected"), [
    (1024, 512, 128),  # the store's chunks would decode 4x a tile's moments past its edge
    (2048, 512, 128),
    (64, 32, 32),      # never larger than the store's chunk
    (1000, 500, 125),  # a divisor of the tile, not MOMENT_CHUNK_MAX itself
    (1022, 511, 73),   # 1022 = 2 x 7 x 73
    (1018, 509, 509),  # 1018 = 2 x 509: chunks of 2 px would cost more; the store's chunk
])
def test_moment_chunk_divides_the_tile_and_stays_small(tile_px: int, chunk: int,
                                                       expected: int) -> None:
    got = moment_chunk(tile_px, chunk)
    assert got == expected
    assert tile_px % got == 0 and got <= max(chunk, MOMENT_CHUNK_MAX)
