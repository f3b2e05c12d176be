"""District statistics with polygons: rasterize + label_stats against exactextract.

The districts are 100 discrete Voronoi cells drawn on a grid COARSE pixels wide, so every
polygon edge lies on a pixel boundary: each pixel is wholly inside or wholly outside a
district, exactextract's coverage fractions are exactly 0 or 1, and its coverage-weighted
mean and count equal the pixel-centre rule (GDAL rasterize, all_touched=False). A margin
and some cells belong to no district, as water or a border would.

Ours fuses both steps per row strip, on the same thread pool as everything else: rasterize
the polygons into the strip's uint8 label image, reduce it with label_stats, merge the partials.
rasterio 1.4 holds the GIL while GDAL burns, so only the label_stats halves of the strips
overlap; burning uint8 rather than int32 labels is what keeps the rasterizing cheap.
exactextract 0.3 has no parallel mode, so it is timed as its one call (on an in-memory NumPy
raster, and reading the GeoTIFF), and ours also on one thread for an even comparison.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Mapping
from concurrent.futures import Executor
from functools import partial
from typing import Any

import numpy as np
from suite_core import SIZE_LARGE, SLOW_ROUNDS, THREADS, Contender

from ruinmap.bench.inputs import Inputs

G_DISTRICTS = f"district stats 100 polygons {SIZE_LARGE}x{SIZE_LARGE}"
DISTRICT_CONTENDERS = (
    "ruinmap rasterize + label_stats",
    "ruinmap rasterize + label_stats 1 thread",
    "exactextract (NumPy raster)",
    "exactextract (GeoTIFF)",
)
N_DISTRICTS = 100
COARSE = 10  # district edges on a 10-pixel staircase; any whole number of pixels keeps 0/1 cover
PIXEL_M = 10.0
X0, Y0 = 500_000.0, 3_700_000.0  # upper-left corner, UTM zone 36N (Syria, Ukraine's east)
CRS = "EPSG:32636"
EDGES = np.linspace(0.0, 0.5, 65)


def district_polygons(size: int, seed: int = 7) -> Any:
    """GeoDataFrame of districts (column `district`, 1..100) snapped to the pixel grid."""
    import geopandas as gpd
    import rasterio.features
    import shapely
    from rasterio.transform import Affine
    from scipy.spatial import cKDTree

    n = max(1, size // COARSE)
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, n, (N_DISTRICTS, 2))
    centres = (np.indices((n, n)).reshape(2, -1).T + 0.5).astype(np.float64)
    coarse = (cKDTree(seeds).query(centres)[1] + 1).reshape(n, n).astype(np.int32)
    coarse[: max(1, n // 50), :] = 0  # a strip along the top and a few cells: no district
    coarse[(coarse % 23) == 0] = 0
    transform = Affine(PIXEL_M * COARSE, 0.0, X0, 0.0, -PIXEL_M * COARSE, Y0)
    pieces: dict[int, list[Any]] = {}
    for geom, value in rasterio.features.shapes(coarse, mask=coarse > 0, transform=transform):
        pieces.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    ids = sorted(pieces)
    geoms = [shapely.union_all(pieces[k]) for k in ids]
    return gpd.GeoDataFrame({"district": np.array(ids, np.int32)}, geometry=geoms, crs=CRS)


def pixel_transform() -> Any:
    from rasterio.transform import Affine

    return Affine(PIXEL_M, 0.0, X0, 0.0, -PIXEL_M, Y0)


def label_dtype(n_labels: int) -> str:
    """The narrowest label dtype: GDAL burns (and label_stats reads) 1 byte 3x faster than 4."""
    return "uint8" if n_labels <= 255 else "uint16" if n_labels <= 65535 else "int32"


def _strip_stats(
    shapes: list[tuple[Any, int]], n_labels: int, values: np.ndarray, row0: int
) -> Any:
    """label_stats of the rows of `values` starting at `row0`, zones rasterized on the fly."""
    import rasterio.features
    from rasterio.transform import Affine

    from ruinmap.kernels.zonal import label_stats

    burned = rasterio.features.rasterize(
        shapes,
        out_shape=values.shape,
        transform=pixel_transform() @ Affine.translation(0, row0),
        fill=0,
        all_touched=False,  # the pixel-centre rule
        dtype=label_dtype(n_labels),
    )
    return label_stats(burned, values, n_labels, EDGES)


def ruinmap_district_stats(
    pool: Executor | None, gdf: Any, values: np.ndarray, n_strips: int
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) per row of `gdf`: rasterize + label_stats per strip, merged."""
    from rasterio.errors import NotGeoreferencedWarning

    from ruinmap.bench import strip_bounds
    from ruinmap.kernels.zonal import merge_label_stats

    shapes = list(zip(gdf.geometry, gdf["district"].tolist(), strict=True))
    n_labels = int(gdf["district"].max())
    bounds = strip_bounds(values.shape[0], n_strips)

    def one(b: tuple[int, int]) -> Any:
        return _strip_stats(shapes, n_labels, values[b[0] : b[1]], b[0])

    # rasterio's in-memory dataset warns "no geotransform" before setting one; the filters it
    # uses to hide that are not thread-safe, so the warning leaks from pool threads.
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    parts = list(pool.map(one, bounds)) if pool is not None else [one(b) for b in bounds]
    stats = merge_label_stats(parts)
    rows = gdf["district"].to_numpy() - 1
    return stats.mean[rows], stats.count[rows].astype(np.float64)


def exactextract_district_stats(raster: Any, gdf: Any) -> tuple[np.ndarray, np.ndarray]:
    """(mean, count) per row of `gdf` from exactextract's coverage-weighted statistics."""
    from exactextract import exact_extract

    df = exact_extract(raster, gdf, ["mean", "count"], include_cols=["district"], output="pandas")
    return df["mean"].to_numpy(np.float64), df["count"].to_numpy(np.float64)


def build_districts(pool: Executor) -> Mapping[str, Contender]:
    import pyproj
    import rasterio
    from exactextract.raster import NumPyRasterSource

    values = Inputs(SIZE_LARGE, pool, THREADS).sigma0("post", 1)[0]
    gdf = district_polygons(SIZE_LARGE)
    tmp = tempfile.TemporaryDirectory(prefix="ruinmap-bench-districts-")
    tif = os.path.join(tmp.name, "sigma0.tif")
    with rasterio.open(
        tif, "w", driver="GTiff", width=SIZE_LARGE, height=SIZE_LARGE, count=1,
        dtype="float32", crs=CRS, transform=pixel_transform(), nodata=np.nan,
        tiled=True, blockxsize=512, blockysize=512,
    ) as dst:  # fmt: skip
        dst.write(values, 1)
    gdf.to_file(os.path.join(tmp.name, "districts.gpkg"))

    h = SIZE_LARGE * PIXEL_M
    in_memory = NumPyRasterSource(
        values, X0, Y0 - h, X0 + h, Y0, nodata=np.nan, srs_wkt=pyproj.CRS(CRS).to_wkt()
    )
    ours = ruinmap_district_stats(pool, gdf, values, THREADS)
    for name, raster in (("NumPy raster", in_memory), ("GeoTIFF", tif)):
        theirs = exactextract_district_stats(raster, gdf)
        np.testing.assert_array_equal(ours[1], theirs[1], err_msg=f"count vs exactextract {name}")
        np.testing.assert_allclose(
            ours[0], theirs[0], rtol=1e-9, err_msg=f"mean vs exactextract {name}"
        )

    def geotiff_run() -> Any:
        _ = tmp  # the directory lives as long as this contender
        return exactextract_district_stats(tif, gdf)

    return {
        "ruinmap rasterize + label_stats": Contender(
            partial(ruinmap_district_stats, pool, gdf, values, THREADS)
        ),
        "ruinmap rasterize + label_stats 1 thread": Contender(
            partial(ruinmap_district_stats, None, gdf, values, 1), SLOW_ROUNDS
        ),
        "exactextract (NumPy raster)": Contender(
            partial(exactextract_district_stats, in_memory, gdf), SLOW_ROUNDS
        ),
        "exactextract (GeoTIFF)": Contender(geotiff_run, SLOW_ROUNDS),
    }
