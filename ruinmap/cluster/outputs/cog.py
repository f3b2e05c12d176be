"""Cloud-Optimized GeoTIFFs of large 2-D rasters (the damage score and the damage classes).

`write_cog` never holds the whole raster in memory: it reads the source in row windows (a
whole number of output tiles, and of the source's chunks where it can, at most
`max_window_bytes` each), writes them into a tiled BigTIFF-if-needed GeoTIFF under a temporary
name, then has GDAL's COG driver copy that into the final layout (tiles, overviews, header and
overviews first so HTTP range readers fetch little) under a second temporary name, checks the
result is a COG, and renames it onto `dst` (`atomic_path`). A float score's average overviews
(and `write_layers_cog`'s) are computed in the same pass over the source, each level from the
full resolution (`cog_staging`); a class raster's nearest overviews are the driver's. The
folder needs room for both files for a moment (a float staging file is uncompressed, the
class raster's fast-compressed).

A class raster (`class_names` given, uint8) also gets, so QGIS, ArcGIS and GDAL show named,
coloured classes without any set-up:
- a colour table inside the TIFF (0 none light grey, 1..k yellow to dark red, 255 nodata
  transparent; see `palette`);
- the class names inside the TIFF too, as band metadata `CLASS_<value>=<name>` in GDAL's
  GDAL_METADATA tag, so a copy without side-cars still names its classes (`gdalinfo`,
  rasterio's `tags(1)`, QGIS's layer metadata). GDAL before 3.12 keeps category names and
  raster attribute tables only in PAM side-cars; 3.12 can write a RAT into GDAL_METADATA
  (OSGeo/gdal#13201), which the GDAL here (3.10) cannot;
- category names in a `<name>.tif.aux.xml` (GDAL PAM), which QGIS reads as the class labels
  of the colour table;
- a `<name>.qml` QGIS style (paletted renderer with only the used classes and their labels),
  which QGIS loads automatically as the layer's default style.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from numpy.typing import DTypeLike
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError
from rasterio.io import DatasetWriter, MemoryFile
from rasterio.windows import Window

from ruinmap.cluster.outputs.cog_staging import staged_with_overviews
from ruinmap.cluster.outputs.palette import class_categories, class_colormap
from ruinmap.cluster.outputs.styles import pam_path, write_class_sidecars, write_fraction_style
from ruinmap.cluster.storage.durable import atomic_path, disk_full_error, temp_sibling
from ruinmap.errors import InputError, RuinmapError

OVERVIEW_RESAMPLINGS = (
    "nearest",
    "average",
    "mode",
    "bilinear",
    "cubic",
    "cubicspline",
    "lanczos",
    "rms",
)
COMPRESSIONS = ("deflate", "zstd", "lzw")
# A window of this many bytes is read and written at once; with GDAL's own cache this bounds
# the memory of a COG write whatever the raster's size.
DEFAULT_WINDOW_BYTES = 128 * 2**20
# GDAL's block cache (MB) while writing: its default, 5 % of RAM, would hold gigabytes of
# finished tiles on a large machine; tiles are written in whole rows, so little is re-read.
_GDAL_CACHE_MB = 256
# GeoTIFF tiles must be multiples of 16 pixels.
_TILE_MULTIPLE = 16


class Sliceable2D(Protocol):
    """What `write_cog` reads: a 2-D array-like (numpy, zarr.Array, dask or xarray)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


def source_row_chunk(source: Any) -> int | None:
    """Rows per storage chunk (or shard) of `source`, when it has chunks; else None."""
    for attr in ("shards", "chunks"):
        try:
            value = getattr(source, attr, None)
        except Exception:  # zarr raises on `.shards` of some arrays; not worth failing over
            value = None
        if not value:
            continue
        first = value[0]
        if isinstance(first, tuple):  # dask: a tuple of chunk sizes per dimension
            first = first[0] if first else None
        if isinstance(first, (int, np.integer)) and first > 0:
            return int(first)
    return None


def window_rows(
    shape: tuple[int, int],
    itemsize: int,
    *,
    block: int,
    chunk_rows: int | None = None,
    max_window_bytes: int = DEFAULT_WINDOW_BYTES,
) -> int:
    """Rows read per window: whole tiles (and whole source chunks where that stays near the
    byte budget), as many as fit `max_window_bytes`, at least one tile row."""
    height, width = shape
    row_bytes = max(width * itemsize, 1)
    budget_rows = max(max_window_bytes // row_bytes, 1)
    step = block
    if chunk_rows:
        aligned = math.lcm(block, chunk_rows)
        # A window that ends mid-chunk makes the next window read that chunk again.
        if aligned * row_bytes <= 2 * max_window_bytes:
            step = aligned
    rows = max(step, budget_rows // step * step)
    return min(rows, -(-height // block) * block)


def _check_source(source: Any, dst: Path) -> tuple[int, int]:
    shape = tuple(getattr(source, "shape", ()))
    if len(shape) != 2:
        raise InputError(f"{dst.name}: expected a 2-D raster (rows, columns), got shape {shape}")
    height, width = int(shape[0]), int(shape[1])
    if height == 0 or width == 0:
        raise InputError(
            f"{dst.name}: the raster is empty (shape {shape}); a GeoTIFF needs at least 1x1 "
            "pixel, so there is nothing to write (is the job's area empty?)"
        )
    return height, width


def _check_options(
    dst: Path,
    dtype: np.dtype,
    source_dtype: np.dtype | None,
    nodata: float | None,
    block: int,
    overview_resampling: str | None,
    compress: str,
    class_names: Sequence[str] | None,
) -> str:
    if block <= 0 or block % _TILE_MULTIPLE:
        raise InputError(f"{dst.name}: block {block}: must be a positive multiple of 16 pixels")
    if compress not in COMPRESSIONS:
        raise InputError(f"{dst.name}: compress {compress!r}: use one of {COMPRESSIONS}")
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise InputError(f"{dst.name}: dtype {dtype}: a GeoTIFF band must be integer or float")
    if source_dtype is not None and source_dtype.kind == "f" and dtype.kind in "iu":
        raise InputError(
            f"{dst.name}: the source is {source_dtype} but dtype is {dtype}; casting floats to "
            "integers would turn NaN into arbitrary classes; classify first (uint8, 255 = nodata)"
        )
    if nodata is not None:
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            if not (float(nodata).is_integer() and info.min <= nodata <= info.max):
                raise InputError(f"{dst.name}: nodata {nodata} does not fit dtype {dtype}")
    if class_names is not None and dtype != np.uint8:
        raise InputError(f"{dst.name}: class_names need a uint8 class raster, dtype is {dtype}")
    if overview_resampling is None:
        overview_resampling = "nearest" if dtype.kind in "iu" else "average"
    if overview_resampling not in OVERVIEW_RESAMPLINGS:
        raise InputError(
            f"{dst.name}: overview_resampling {overview_resampling!r}: use one of "
            f"{OVERVIEW_RESAMPLINGS}"
        )
    return overview_resampling


def write_cog(
    source: Sliceable2D,
    dst: str | os.PathLike[str],
    *,
    transform: Affine,
    crs: CRS | str,
    nodata: float | None,
    dtype: DTypeLike,
    block: int = 512,
    overview_resampling: str | None = None,
    compress: str = "deflate",
    level: int | None = None,
    description: str | None = None,
    class_names: Sequence[str] | None = None,
    tags: Mapping[str, object] | None = None,
    max_window_bytes: int = DEFAULT_WINDOW_BYTES,
) -> Path:
    """Write a 2-D raster to `dst` as a Cloud-Optimized GeoTIFF, one row window at a time.

    source: numpy array, zarr.Array, dask or xarray array of shape (rows, cols); windows
        `source[r0:r1, :]` are read in turn, so it is never loaded whole (a dask array is
        computed once per window: pass a stored array, not a long graph).
    transform, crs: georeferencing of pixel (0, 0)'s corner, as rasterio uses them.
    nodata: the nodata value (NaN for float scores, 255 for classes) or None.
    dtype: the band's data type; values are cast to it (floats to integers are refused).
    block: tile side in pixels (multiple of 16). Overviews halve the size until one fits a tile.
    overview_resampling: default "nearest" for integers (classes must stay classes), "average"
        for floats.
    compress: "deflate" (readable everywhere), "zstd" (needs GDAL >= 2.3) or "lzw"; floats
        use the floating-point predictor.
    level: compression level; default 1 for floats (their noisy low mantissa bits barely
        compress: deflate 6 saves about 2 % and takes twice as long) and 4 for integers
        (classes: within 8 % of level 6's size, 2-3 times faster).
    description: the band's description (shown by QGIS as the band name), e.g. "score".
    class_names: names of damage classes 1..k of a uint8 class raster; adds the colour table,
        category names and QGIS style (module doc).
    tags: dataset metadata (method, units, dates...) written into the TIFF.

    Raises InputError for an empty or non-2-D source and for bad options. Returns `dst`.
    """
    dst = Path(dst)
    out_dtype = np.dtype(dtype)
    src_dtype = np.dtype(source.dtype) if hasattr(source, "dtype") else None
    height, width = _check_source(source, dst)
    resampling = _check_options(
        dst, out_dtype, src_dtype, nodata, block, overview_resampling, compress, class_names
    )
    try:
        crs = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"{dst.name}: crs {crs!r} is not a CRS ({exc})") from None
    rows = window_rows(
        (height, width),
        out_dtype.itemsize,
        block=block,
        chunk_rows=source_row_chunk(source),
        max_window_bytes=max_window_bytes,
    )
    dst.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {"COMPRESS": compress.upper()}
    if out_dtype.kind == "f":
        options["PREDICTOR"] = "YES"
    if compress != "lzw":
        default_level = 1 if out_dtype.kind == "f" else 4
        options["LEVEL"] = default_level if level is None else level
    staging = temp_sibling(dst.with_suffix(".tif"))
    try:
        with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB):
            if out_dtype == np.float32 and resampling == "average" and nodata is not None \
                    and math.isnan(nodata):
                # a score: its NaN-aware average levels made in the one pass (`cog_staging`)
                _write_float_cog(source, staging, dst, shape=(height, width), rows=rows,
                                 transform=transform, crs=crs, block=block,
                                 description=description, tags=tags, options=options,
                                 needed=height * width * out_dtype.itemsize * 4 // 3)
            else:
                _write_staging(
                    source,
                    staging,
                    shape=(height, width),
                    rows=rows,
                    transform=transform,
                    crs=crs,
                    nodata=nodata,
                    dtype=out_dtype,
                    block=block,
                    description=description,
                    colormap=class_colormap(class_names) if class_names is not None else None,
                    tags=tags,
                    band_tags=(class_band_tags(class_names) if class_names is not None
                               else None),
                )
                _copy_to_cog(staging, dst, block=block, options={
                    **options, "OVERVIEW_RESAMPLING": resampling.upper()})
    except Exception:
        # uncompressed, with overviews
        _raise_if_disk_full(dst, staging, height * width * out_dtype.itemsize * 4 // 3)
        raise
    finally:
        _remove_pam(staging)
        staging.unlink(missing_ok=True)
    if class_names is not None:
        write_class_sidecars(dst, class_names)
    else:
        # A class raster written here before would leave its labels on this raster.
        _remove_pam(dst)
        dst.with_suffix(".qml").unlink(missing_ok=True)
    return dst


def class_band_tags(class_names: Sequence[str]) -> dict[str, str]:
    """The band metadata naming a class raster's values inside the TIFF (module doc)."""
    return {f"CLASS_{value}": name for value, name in class_categories(class_names).items()}


def _raise_if_disk_full(dst: Path, staging: Path, needed: int) -> None:
    """DiskFullError naming `dst` when its folder has less than `needed` bytes free (its
    staging file removed first).

    libtiff says "No space left on device" on stderr only; GDAL raises "Write failed", or
    fails to read back the directory it could not finish, and `atomic_path` (which does not
    know the size) may have called it a full disk already: judged here once, by the space.
    """
    is_full = shutil.disk_usage(dst.parent).free < needed  # before the staging is gone
    written = staging.stat().st_size if staging.is_file() else 0
    staging.unlink(missing_ok=True)
    if is_full:
        raise disk_full_error(dst, written, needed) from None


def _remove_pam(path: Path) -> None:
    pam_path(path).unlink(missing_ok=True)


def _write_staging(
    source: Sliceable2D,
    path: Path,
    *,
    shape: tuple[int, int],
    rows: int,
    transform: Affine,
    crs: CRS,
    nodata: float | None,
    dtype: np.dtype,
    block: int,
    description: str | None,
    colormap: Mapping[int, tuple[int, int, int, int]] | None,
    tags: Mapping[str, object] | None,
    band_tags: Mapping[str, str] | None = None,
) -> None:
    height, width = shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": 1,
        "dtype": dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": block,
        "blockysize": block,
        # Written once and read once by the COG copy: fast compression only keeps it small.
        "compress": "zstd",
        "zstd_level": 1,
        "bigtiff": "IF_SAFER",
    }
    with rasterio.open(path, "w", **profile) as out:
        for r0 in range(0, height, rows):
            r1 = min(r0 + rows, height)
            values = np.asarray(source[r0:r1, :])
            if values.shape != (r1 - r0, width):
                raise InputError(
                    f"{path.name}: rows {r0}:{r1} of the source have shape {values.shape}, "
                    f"expected {(r1 - r0, width)}"
                )
            out.write(values.astype(dtype, copy=False), 1, window=Window(0, r0, width, r1 - r0))
        if description:
            out.set_band_description(1, description)
        if colormap is not None:
            out.write_colormap(1, dict(colormap))
        if tags:
            out.update_tags(**{str(k): str(v) for k, v in tags.items()})
        if band_tags:
            out.update_tags(1, **band_tags)


def cog_problems(path: str | os.PathLike[str], *, block: int | None = None) -> list[str]:
    """Why `path` is not a valid COG (empty list if it is).

    Checks GDAL's own COG layout marker (IMAGE_STRUCTURE LAYOUT=COG, written only by the COG
    driver), tiling (and the tile size when `block` is given), and overviews on every band
    when the raster is larger than one tile.
    """
    problems = []
    with rasterio.open(path) as src:
        layout = src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT")
        if layout != "COG":
            problems.append(f"LAYOUT is {layout!r}, not 'COG'")
        tile_h, tile_w = src.block_shapes[0]
        if not src.profile.get("tiled"):
            problems.append(f"not tiled (blocks {tile_h}x{tile_w})")
        elif block is not None and (tile_h, tile_w) != (block, block):
            problems.append(f"tiles are {tile_h}x{tile_w}, expected {block}x{block}")
        if max(src.height, src.width) > tile_w:
            for band in src.indexes:
                if not src.overviews(band):
                    problems.append(f"band {band} has no overviews")
    return problems


def write_bands_cog(dst: str | os.PathLike[str], bands: Sequence[np.ndarray],
                    names: Sequence[str], *, transform: Affine, crs: CRS | str,
                    tags: Mapping[str, object], units: Sequence[str] | None = None,
                    styled: bool = True) -> Path:
    """A small multi-band float32 COG (NaN nodata) of 2-D arrays that fit in memory, e.g. a
    damage grid's layers; written whole, atomically. Returns `dst`.

    Each band is a measurement, not a colour: grey/undefined colour interpretation and
    PHOTOMETRIC=MINISBLACK (so no reader shows two or three bands as RGB), its name as the
    band description, its unit (`units`), and its statistics (STATISTICS_MINIMUM, _MAXIMUM,
    _MEAN, _STDDEV, _VALID_PERCENT over valid cells) as band metadata inside the TIFF. With
    `styled`, `<stem>.qml` draws band 1 as a 0-1 pseudocolour ramp (`write_fraction_style`).
    """
    dst = Path(dst)
    rows, cols = bands[0].shape
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": len(bands),
               "dtype": "float32", "crs": crs, "transform": transform, "nodata": float("nan"),
               "photometric": "MINISBLACK"}
    stack = np.stack(list(bands)).astype(np.float32)
    with MemoryFile() as memory, memory.open(**profile) as mem:
        mem.write(stack)
        mem.descriptions = tuple(names)
        mem.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (len(bands) - 1)
        mem.update_tags(**{k: str(v) for k, v in tags.items()})
        for index, band in enumerate(stack, start=1):
            if units is not None:
                mem.set_band_unit(index, units[index - 1])
            mem.update_tags(index, **band_statistics(band))
        with atomic_path(dst) as tmp:
            rasterio.shutil.copy(mem, tmp, driver="COG", compress="deflate",
                                 predictor="3", blocksize="256")
            _remove_pam(tmp)
    if styled:
        write_fraction_style(dst, names[0])
    return dst


def band_statistics(band: np.ndarray) -> dict[str, str]:
    """GDAL's STATISTICS_* band metadata of a float band (NaN = nodata; empty when none)."""
    valid = band[np.isfinite(band)]
    if not valid.size:
        return {"STATISTICS_VALID_PERCENT": "0"}
    return {"STATISTICS_MINIMUM": repr(float(valid.min())),
            "STATISTICS_MAXIMUM": repr(float(valid.max())),
            "STATISTICS_MEAN": repr(float(valid.mean(dtype=np.float64))),
            "STATISTICS_STDDEV": repr(float(valid.std(dtype=np.float64))),
            "STATISTICS_VALID_PERCENT": repr(100.0 * valid.size / band.size)}


def write_layers_cog(
    sources: Sequence[Sliceable2D],
    dst: str | os.PathLike[str],
    *,
    names: Sequence[str],
    units: Sequence[str],
    transform: Affine,
    crs: CRS | str,
    tags: Mapping[str, object] | None = None,
    block: int = 512,
    max_window_bytes: int = DEFAULT_WINDOW_BYTES,
) -> Path:
    """Several full-size layers of one grid as the float32 bands of one COG (NaN nodata),
    read window by window like `write_cog` (float or integer sources; integers are written
    as the same values in float32): each band named (its description, what QGIS lists as the
    band name) and with its unit, grey / undefined colour interpretation (a measurement,
    never RGB), average overviews (each level's pixel the mean of the valid full-resolution
    pixels it covers). Written atomically; returns `dst`.

    The overviews are computed in the one pass over the sources (`cog_staging`) and copied by
    the COG driver: left to make them itself, it writes them band after band into
    pixel-interleaved compressed tiles, rewriting every tile once per band (GDAL's "A strile
    cannot be rewritten in place"), and GDAL's own overview builder re-reads the full
    resolution once per level.
    """
    dst = Path(dst)
    if not sources or len(sources) != len(names) or len(names) != len(units):
        raise InputError(f"{dst.name}: give one name and one unit per layer "
                         f"({len(sources)} layers, {len(names)} names, {len(units)} units)")
    height, width = _check_source(sources[0], dst)
    for source in sources[1:]:
        if _check_source(source, dst) != (height, width):
            raise InputError(f"{dst.name}: the layers' shapes differ; they must share a grid")
    _check_options(dst, np.dtype(np.float32), None, float("nan"), block, None, "deflate", None)
    crs = CRS.from_user_input(crs)
    rows = window_rows((height, width), 4 * len(sources), block=block,
                       chunk_rows=source_row_chunk(sources[0]),
                       max_window_bytes=max_window_bytes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = temp_sibling(dst.with_suffix(".tif"))

    def read_rows(index: int, r0: int, r1: int) -> np.ndarray:
        return np.asarray(sources[index - 1][r0:r1, :], dtype=np.float32)

    def describe(out: DatasetWriter) -> None:
        out.descriptions = tuple(names)
        out.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (len(sources) - 1)
        for index, unit in enumerate(units, start=1):
            out.set_band_unit(index, unit)
        if tags:
            out.update_tags(**{str(k): str(v) for k, v in tags.items()})

    profile = _staging_profile(transform, crs, block) | {"photometric": "MINISBLACK",
                                                         "interleave": "band"}
    needed = height * width * 4 * len(sources) * 4 // 3  # uncompressed, with overviews
    with rasterio.Env(GDAL_CACHEMAX=_GDAL_CACHE_MB), staged_with_overviews(
            staging, read_rows, count=len(sources), shape=(height, width), rows=rows,
            profile=profile, describe=describe,
            on_error=lambda: _raise_if_disk_full(dst, staging, needed)) as vrt:
        _copy_to_cog(vrt, dst, block=block, options={
            "COMPRESS": "DEFLATE", "LEVEL": 1, "PREDICTOR": "YES",
            "OVERVIEWS": "FORCE_USE_EXISTING"})
    return dst


def _staging_profile(transform: Affine, crs: CRS, block: int) -> dict[str, Any]:
    """The GeoTIFF profile of a float staging file (size and bands set by the writer)."""
    return {"driver": "GTiff", "crs": crs, "transform": transform, "nodata": float("nan"),
            "tiled": True, "blockxsize": block, "blockysize": block,
            # Written once and read once by the COG copy: compressing it too (zstd 1) cost
            # 1-2 s more of 5-8 s for pwtt's three layers at 4096^2 (2 loaded cores).
            "compress": None, "bigtiff": "IF_SAFER"}


def _copy_to_cog(source: Path, dst: Path, *, block: int, options: Mapping[str, Any]) -> None:
    """GDAL's COG driver's copy of `source` onto `dst` (atomically), checked a valid COG."""
    with atomic_path(dst) as tmp:
        rasterio.shutil.copy(source, tmp, driver="COG", BLOCKSIZE=block, BIGTIFF="IF_SAFER",
                             NUM_THREADS="ALL_CPUS", **options)
        _remove_pam(tmp)
        problems = cog_problems(tmp, block=block)
        if problems:
            raise RuinmapError(f"{dst}: GDAL did not write a valid COG: {problems}")


def _write_float_cog(source: Sliceable2D, staging: Path, dst: Path, *, shape: tuple[int, int],
                     rows: int, transform: Affine, crs: CRS, block: int,
                     description: str | None, tags: Mapping[str, object] | None,
                     options: Mapping[str, Any], needed: int) -> None:
    """`write_cog` of a float32 band with NaN nodata and average overviews: staged with its
    levels in one pass (`cog_staging`), copied by the COG driver."""

    def read_rows(index: int, r0: int, r1: int) -> np.ndarray:
        return np.asarray(source[r0:r1, :]).astype(np.float32, copy=False)

    def describe(out: DatasetWriter) -> None:
        if description:
            out.set_band_description(1, description)
        if tags:
            out.update_tags(**{str(k): str(v) for k, v in tags.items()})

    with staged_with_overviews(staging, read_rows, count=1, shape=shape, rows=rows,
                               profile=_staging_profile(transform, crs, block),
                               describe=describe,
                               on_error=lambda: _raise_if_disk_full(dst, staging, needed)
                               ) as vrt:
        _copy_to_cog(vrt, dst, block=block,
                     options={**options, "OVERVIEWS": "FORCE_USE_EXISTING"})
