"""The settings of an ingest besides its inputs, output and cluster, and the shard size.

Defaults, chosen by measurement (README "Ingest" and benchmarks/bench_ingest.py):
inner chunk 512 x 512 px, shard 2048 x 2048 px (all bands of one date), blosc-zstd level 1
with byte shuffle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ruinmap.cluster.storage.arrays import DEFAULT_CHUNK
from ruinmap.errors import SpecError

__all__ = ["DEFAULT_CHUNK", "DEFAULT_COMPRESSION", "DEFAULT_SHARD", "IngestOptions",
           "choose_shard"]

DEFAULT_SHARD = 2048
DEFAULT_COMPRESSION = "blosc-zstd:1"
# Largest float32 shard (all bands) an automatic shard size may reach. A task holds about
# three copies of its shard (source read, float32 block, encoded shard), so this bounds a
# worker's memory whatever the image size: 3 x 128 MiB plus GDAL's 64 MiB cache.
MAX_AUTO_SHARD_BYTES = 128 * 2**20


@dataclass(frozen=True)
class IngestOptions:
    """Everything about an ingest except its inputs, output and cluster.

    crs, resolution, bbox (minx, miny, maxx, maxy in bbox_crs, default the target CRS): the
    target grid (see `geo.target.target_grid`). chunk: inner Zarr chunk side (px). shard: shard side
    (px, a multiple of chunk; None = 2048 rounded to chunks, smaller when many bands).
    compression: "blosc-zstd:1" (default), "zstd:3", "blosc-lz4:5" or "none". resampling:
    GDAL method for inputs not on the grid. nodata: overrides every file's nodata value.
    bands: band names overriding the files' descriptions. stack_bands: files of one side with
    the same date are one acquisition, their bands stacked in file-name order (per-band
    Sentinel-2 files). pre_dates/post_dates: one date per file, overriding tags and names.
    overwrite: replace an existing ruinmap store instead of resuming it or leaving a complete
    one alone. durable: fsync every shard before recording it (off only for benchmarks).
    scale: "auto" (default), "power", "amplitude" or "db": the scale of the SAR inputs, which
    the ingest converts to linear power (`ingest.scale`); auto decides per file from its
    metadata, else its values.
    ingest: "always" (default) copies every date into the store; "auto" lets tiles read in
    place the dates whose files are local tiled GeoTIFFs (COGs) on the grid and copies the
    rest; "never" reads every date in place and refuses a file that would need copying
    (`ingest.inplace`).
    confine_to: real paths of the folders every local input must lie in, checked where each
    file is opened (the header on the client, every read on the workers, the vector files in
    `run_job`), see `storage.confined`; None (the command line) reads any file.
    """

    crs: str | None = None
    resolution: tuple[float, float] | None = None
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str | None = None
    chunk: int = DEFAULT_CHUNK
    shard: int | None = None
    compression: str = DEFAULT_COMPRESSION
    resampling: str = "bilinear"
    nodata: float | None = None
    bands: tuple[str, ...] | None = None
    stack_bands: bool = False
    pre_dates: tuple[str, ...] | None = None
    post_dates: tuple[str, ...] | None = None
    overwrite: bool = False
    durable: bool = True
    confine_to: tuple[str, ...] | None = None
    scale: str = "auto"
    ingest: str = "always"


def choose_shard(chunk: int, shard: int | None, band_count: int) -> int:
    """The shard side: `shard` checked, or the default 2048 rounded up to whole chunks and
    halved (in whole chunks) while a float32 shard of all bands exceeds 128 MiB."""
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
        raise SpecError(f"--chunk {chunk!r}: must be a positive integer (pixels)")
    if shard is not None:
        if not isinstance(shard, int) or isinstance(shard, bool) or shard < chunk or shard % chunk:
            raise SpecError(f"--shard {shard!r}: must be a multiple of --chunk {chunk}")
        return shard
    n_chunks = max(1, math.ceil(DEFAULT_SHARD / chunk))
    while n_chunks > 1 and band_count * (n_chunks * chunk) ** 2 * 4 > MAX_AUTO_SHARD_BYTES:
        n_chunks //= 2
    return n_chunks * chunk
