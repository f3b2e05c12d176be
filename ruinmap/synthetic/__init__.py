"""A realistic synthetic city with known damage, written as real files: for `ruinmap demo`,
tests and benchmarks of the pipeline.

`make_city(out_dir)` writes, on a projected 10 m grid near Aleppo (EPSG:32637):

- ``pre/S1_YYYYMMDD_VV_VH.tif`` and ``post/...``: one GeoTIFF per Sentinel-1 acquisition, one
  float32 band per polarisation (band descriptions "VV", "VH"), linear sigma0 with speckle,
  NaN as nodata (a swath edge per orbit, a missing burst in one pre date); tags
  ``ACQUISITION_DATE`` (ISO), ``TIFFTAG_DATETIME``, ``RELATIVE_ORBIT``, ``ORBIT_DIRECTION``,
  ``POLARISATIONS`` and, per band, ``POLARISATION``;
- ``districts.geojson``: Voronoi districts in EPSG:4326 (``district_id``, ``name``);
- ``buildings.gpkg``: footprints in the grid's CRS (``building_id``);
- ``truth_buildings.parquet`` (GeoParquet): ``building_id``, ``area_m2``, ``destroyed``,
  ``is_new``, ``is_shed``, ``district_id``, ``drop_db``;
- ``truth_districts.csv``: per district counts, areas and ``damaged_fraction`` = destroyed
  footprint area / footprint area of the buildings whose centroid lies in it (NaN: none);
- ``truth_landcover.tif`` (dominant cover, codes in `LandCover`) and
  ``truth_destroyed_fraction.tif`` (fraction of each pixel covered by destroyed buildings).

Distractors a good method must live with: crops growing and fields ploughed between dates,
soil moisture and wind on water changing per date, new buildings on the outskirts.
`write_job_spec(city, out_dir)` writes a job.toml for it that `ruinmap.cluster.spec` accepts.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer

from ruinmap.cluster.job.spec import dump_toml, parse_spec
from ruinmap.errors import InputError
from ruinmap.synthetic.damage import DamagePlan, choose_damage, district_truth
from ruinmap.synthetic.layout import Layout, make_districts, make_layout
from ruinmap.synthetic.radar import (
    LandCover,
    RadarModel,
    Radiometry,
    Scene,
    building_terms,
    debris_fraction,
    make_radiometry,
    make_scene,
    render,
)

__all__ = [
    "ALEPPO_LONLAT",
    "BAND_TAG_POLARISATION",
    "TAG_DATE",
    "TAG_ORBIT",
    "TAG_ORBIT_DIRECTION",
    "TAG_POLARISATIONS",
    "City",
    "LandCover",
    "RadarModel",
    "make_city",
    "write_job_spec",
]

#: GeoTIFF metadata items written per file (GDAL "default" domain) and per band.
TAG_DATE = "ACQUISITION_DATE"
TAG_ORBIT = "RELATIVE_ORBIT"
TAG_ORBIT_DIRECTION = "ORBIT_DIRECTION"
TAG_POLARISATIONS = "POLARISATIONS"
BAND_TAG_POLARISATION = "POLARISATION"

#: (lon, lat) of the scene centre: Aleppo.
ALEPPO_LONLAT = (37.16, 36.20)

_CO_POL = ("VV", "HH")
_CROSS_POL = ("VH", "HV")
_OWN_FILES = ("districts.geojson", "buildings.gpkg", "truth_buildings.parquet",
              "truth_districts.csv", "truth_landcover.tif", "truth_destroyed_fraction.tif")


@dataclass(frozen=True, eq=False)
class City:
    """What `make_city` wrote, and the truth, in the grid's CRS."""

    out_dir: Path
    pre_files: tuple[Path, ...]
    post_files: tuple[Path, ...]
    pre_dates: tuple[date, ...]
    post_dates: tuple[date, ...]
    orbit_of: dict[Path, int]  # relative orbit of each image file
    event_date: date
    polarisations: tuple[str, ...]
    districts_path: Path
    buildings_path: Path
    truth_buildings_path: Path
    truth_districts_path: Path
    landcover_path: Path
    destroyed_fraction_path: Path
    crs: str
    transform: Affine
    shape: tuple[int, int]
    pixel_size_m: float
    seed: int
    # truth per building (as truth_buildings.parquet) and per district (truth_districts.csv)
    buildings: gpd.GeoDataFrame = field(repr=False)
    districts: pd.DataFrame = field(repr=False)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid's CRS."""
        rows, cols = self.shape
        left, top = self.transform.c, self.transform.f
        return (left, top + rows * self.transform.e, left + cols * self.transform.a, top)

    @property
    def orbits(self) -> tuple[int, ...]:
        """The relative orbits, in order of first acquisition."""
        return tuple(dict.fromkeys(self.orbit_of[p] for p in self.pre_files + self.post_files))


def _rng(seed: int, stream: str) -> np.random.Generator:
    # one independent stream per component, so changing n_post does not move the buildings
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def _check_args(
    size: int, n_pre: int, n_post: int, polarisations: Sequence[str], n_districts: int,
    seed: int, pixel_size_m: float, crs: CRS, orbits: Sequence[int], destroyed_fraction: float,
    new_fraction: float, oversample: int,
) -> None:
    for name, value, low in (("size", size, 64), ("n_pre", n_pre, 1), ("n_post", n_post, 1),
                             ("n_districts", n_districts, 1), ("seed", seed, 0),
                             ("oversample", oversample, 1)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < low:
            raise InputError(f"{name} must be an integer >= {low}, got {value!r}")
    if not polarisations or len(set(polarisations)) != len(polarisations) or any(
        p not in _CO_POL + _CROSS_POL for p in polarisations
    ):
        raise InputError(
            f"polarisations must be distinct names from VV, VH, HH, HV, got {list(polarisations)}"
        )
    if not (pixel_size_m > 0 and np.isfinite(pixel_size_m)):
        raise InputError(f"pixel_size_m must be a positive number of metres, got {pixel_size_m}")
    unit = crs.axis_info[0].unit_name if crs.axis_info else ""
    if not crs.is_projected or unit not in ("metre", "meter"):
        raise InputError(f"crs must be a projected CRS in metres (e.g. UTM), got {crs.to_string()}")
    if not orbits or len(set(orbits)) != len(orbits) or any(int(o) < 1 for o in orbits):
        raise InputError(f"orbits must be distinct positive relative orbits, got {list(orbits)}")
    for name, fraction in (("destroyed_fraction", destroyed_fraction),
                           ("new_fraction", new_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise InputError(f"{name} must be in [0, 1), got {fraction}")
    if destroyed_fraction + new_fraction >= 1.0:
        raise InputError("destroyed_fraction + new_fraction must stay below 1")


def _schedule(
    n_pre: int, n_post: int, orbits: Sequence[int], event_date: date, revisit_days: int
) -> list[tuple[date, int, bool]]:
    """(date, orbit index, is_post) of each acquisition: orbits interleaved, one per step."""
    step = max(1, revisit_days // len(orbits))
    anchor = event_date + timedelta(days=2)  # first pass after the event
    out = []
    for i in range(-n_pre, n_post):
        out.append((anchor + timedelta(days=i * step), i % len(orbits), i >= 0))
    return out


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    own = [out_dir / name for name in _OWN_FILES]
    images = [p for sub in ("pre", "post") for p in sorted((out_dir / sub).glob("*.tif"))]
    existing = [p for p in own if p.exists()] + images
    if existing and not overwrite:
        raise InputError(
            f"{out_dir}: already holds {existing[0].name} (and {len(existing) - 1} more); "
            "choose an empty folder or pass overwrite=True"
        )
    for path in existing:
        path.unlink()
    for sub in ("pre", "post"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)


def _grid(
    size: int, pixel_size_m: float, crs: CRS, centre_lonlat: tuple[float, float]
) -> Affine:
    to_grid = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    cx, cy = to_grid.transform(*centre_lonlat)
    half = size * pixel_size_m / 2
    left = np.floor((cx - half) / pixel_size_m) * pixel_size_m
    top = np.floor((cy + half) / pixel_size_m) * pixel_size_m
    return Affine(pixel_size_m, 0.0, float(left), 0.0, -pixel_size_m, float(top))


def _nodata_masks(
    size: int, schedule: list[tuple[date, int, bool]], rng: np.random.Generator
) -> list[np.ndarray]:
    """Per acquisition, True where there is no data: each orbit's swath edge (left for the
    first orbit, right for the second...), jittered by a pixel per date, and one missing burst
    (a strip of rows) in the second pre date when at least four pre dates remain valid."""
    n_orbits = 1 + max(o for _, o, _ in schedule)
    rows = np.arange(size)[:, None].astype(np.float64)
    cols = np.arange(size)[None, :]
    edge_top = rng.uniform(0.02, 0.05, n_orbits) * size
    edge_bottom = rng.uniform(0.0, 0.03, n_orbits) * size
    n_pre = sum(1 for _, _, post in schedule if not post)
    gap_row = int(rng.uniform(0.55, 0.7) * size)
    gap_height = max(2, size // 64)
    masks = []
    for i, (_, orbit, _) in enumerate(schedule):
        width = edge_top[orbit] + (edge_bottom[orbit] - edge_top[orbit]) * rows / size
        width = width + rng.integers(-1, 2)
        mask = cols < width if orbit % 2 == 0 else cols >= size - width
        if i == 1 and n_pre >= 4:
            mask = mask.copy()
            mask[gap_row:gap_row + gap_height] = True
        masks.append(mask)
    return masks


def _write_image(
    path: Path, bands: np.ndarray, polarisations: Sequence[str], transform: Affine, crs: CRS,
    day: date, orbit: int, direction: str, model: RadarModel, seed: int, compress: str | None,
) -> None:
    size = bands.shape[-1]
    profile: dict[str, object] = {
        "driver": "GTiff", "width": size, "height": bands.shape[1], "count": bands.shape[0],
        "dtype": "float32", "crs": crs, "transform": transform, "nodata": float("nan"),
        "interleave": "band",
    }
    if size >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile.update(compress=compress, predictor=3)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        dst.update_tags(
            TIFFTAG_DATETIME=f"{day:%Y:%m:%d} 03:52:00",
            **{
                TAG_DATE: day.isoformat(),
                TAG_ORBIT: str(orbit),
                TAG_ORBIT_DIRECTION: direction,
                TAG_POLARISATIONS: ",".join(polarisations),
            },
            MISSION="SENTINEL-1",
            PRODUCT_TYPE="GRD",
            UNITS="sigma0, linear power",
            ENL=f"{model.enl:g}",
            SOURCE=f"synthetic city, ruinmap.synthetic, seed {seed}",
        )
        for band, pol in enumerate(polarisations, start=1):
            dst.set_band_description(band, pol)
            dst.update_tags(band, **{BAND_TAG_POLARISATION: pol})


def _write_raster(path: Path, array: np.ndarray, transform: Affine, crs: CRS,
                  nodata: float | None) -> None:
    profile: dict[str, object] = {
        "driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
        "dtype": array.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def make_city(
    out_dir: str | Path,
    size: int = 512,
    n_pre: int = 5,
    n_post: int = 3,
    polarisations: Sequence[str] = ("VV", "VH"),
    n_districts: int | None = None,
    seed: int = 0,
    pixel_size_m: float = 10.0,
    crs: str = "EPSG:32637",
    *,
    orbits: Sequence[int] = (87,),
    event_date: date = date(2023, 1, 20),
    revisit_days: int = 12,
    destroyed_fraction: float = 0.12,
    new_fraction: float = 0.02,
    oversample: int | None = None,
    dated_destruction: bool = False,
    radar: RadarModel | None = None,
    centre_lonlat: tuple[float, float] = ALEPPO_LONLAT,
    compress: str | None = None,
    overwrite: bool = False,
) -> City:
    """Write a synthetic city of size x size pixels with known damage into `out_dir`.

    n_pre / n_post acquisitions before / after `event_date`, every `revisit_days` per orbit,
    orbits interleaved (two orbits: 6 days apart). `n_districts` defaults to max(4, size // 32).
    `destroyed_fraction` of the buildings are destroyed (clustered, see damage.py) and
    `new_fraction` are built between the pre and post dates. Fine cover fractions use
    `oversample` x finer rasterization (default 4, 2 above size 2048). Deterministic for a
    seed. With `dated_destruction`, every destroyed building falls on a post-event date of
    its own (uniform over the post dates, its own random stream: the buildings, the damage
    and the default city do not move): it stands intact in the images before, its rubble
    and debris show from that acquisition on, and the truth gains `destroyed_index` (the
    post-event acquisition, -1 intact) and `destroyed_date`. Raises InputError for arguments
    it cannot honour, or when `out_dir` already holds a city and `overwrite` is False.
    """
    out_dir = Path(out_dir)
    grid_crs = CRS.from_user_input(crs)
    n_districts = max(4, size // 32) if n_districts is None else n_districts
    oversample = (4 if size <= 2048 else 2) if oversample is None else oversample
    polarisations = tuple(polarisations)
    orbits = tuple(int(o) for o in orbits)
    _check_args(size, n_pre, n_post, polarisations, n_districts, seed, pixel_size_m, grid_crs,
                orbits, destroyed_fraction, new_fraction, oversample)
    model = radar or RadarModel()
    out_dir.mkdir(parents=True, exist_ok=True)
    _prepare_out_dir(out_dir, overwrite)

    transform = _grid(size, pixel_size_m, grid_crs, centre_lonlat)
    layout = make_layout(size, pixel_size_m, _rng(seed, "layout"))
    district_polys, names, is_urban = make_districts(layout, n_districts, _rng(seed, "districts"))
    district_ids = np.array([f"D{i + 1:03d}" for i in range(len(district_polys))], dtype=object)
    plan = choose_damage(layout, district_polys, is_urban, _rng(seed, "damage"),
                         destroyed_fraction=destroyed_fraction, new_fraction=new_fraction)
    scene = make_scene(layout, plan.destroyed, size, pixel_size_m, oversample, model,
                       _rng(seed, "scene"))
    radiometry = make_radiometry(layout, plan.destroyed, len(orbits), model,
                                 _rng(seed, "radiometry"))

    schedule = _schedule(n_pre, n_post, orbits, event_date, revisit_days)
    masks = _nodata_masks(size, schedule, _rng(seed, "nodata"))
    cross = tuple(p in _CROSS_POL for p in polarisations)
    destroyed_at = (_destruction_indices(plan.destroyed, n_post, _rng(seed, "destruction-dates"))
                    if dated_destruction else None)
    terms: dict[tuple[int, bool], np.ndarray] = {}
    staged = _StagedDestruction(layout, radiometry, scene, plan, destroyed_at, size,
                                pixel_size_m, oversample, model)
    pre_files: list[Path] = []
    post_files: list[Path] = []
    orbit_of: dict[Path, int] = {}
    post_index = -1
    for (day, orbit, is_post), mask in zip(schedule, masks, strict=True):
        post_index += int(is_post)
        if destroyed_at is not None and is_post:
            bands = staged.render(day, event_date, orbit, post_index, cross,
                                  _rng(seed, f"acquisition-{day.isoformat()}"))
        else:
            if (orbit, is_post) not in terms:
                terms[(orbit, is_post)] = building_terms(scene, radiometry, plan.is_new, orbit,
                                                         is_post, model)
            bands = render(
                scene, layout, radiometry, terms[(orbit, is_post)],
                day=float((day - event_date).days), orbit=orbit, is_post=is_post,
                cross_pol=cross, model=model,
                rng=_rng(seed, f"acquisition-{day.isoformat()}"),
            )
        bands[:, mask] = np.nan
        path = out_dir / ("post" if is_post else "pre") / (
            f"S1_{day:%Y%m%d}_{'_'.join(polarisations)}.tif"
        )
        _write_image(path, bands, polarisations, transform, grid_crs, day, orbits[orbit],
                     "DESCENDING" if orbit % 2 == 0 else "ASCENDING", model, seed, compress)
        (post_files if is_post else pre_files).append(path)
        orbit_of[path] = orbits[orbit]
    terms.clear()

    to_crs = _to_crs(transform, size, pixel_size_m)
    buildings_xy = to_crs(layout.buildings)
    districts_path, buildings_path = _write_vectors(
        out_dir, buildings_xy, to_crs(district_polys), district_ids, names, grid_crs
    )
    truth = _building_truth(buildings_xy, layout, plan, district_ids, radiometry.drop_db[0],
                            grid_crs)
    if destroyed_at is not None:
        post_dates = [d for d, _, post in schedule if post]
        truth["destroyed_index"] = destroyed_at
        truth["destroyed_date"] = np.array(
            [np.datetime64(post_dates[i]) if i >= 0 else np.datetime64("NaT")
             for i in destroyed_at], dtype="datetime64[ns]")
    truth_buildings_path = out_dir / "truth_buildings.parquet"
    truth.to_parquet(truth_buildings_path)
    table = district_truth(district_ids, names, plan, truth["area_m2"].to_numpy())
    truth_districts_path = out_dir / "truth_districts.csv"
    table.to_csv(truth_districts_path, index=False)

    landcover_path = out_dir / "truth_landcover.tif"
    _write_raster(landcover_path, scene.landcover, transform, grid_crs, LandCover.NONE)
    destroyed_fraction_path = out_dir / "truth_destroyed_fraction.tif"
    lost = np.bincount(
        scene.pixel, weights=scene.share * plan.destroyed[scene.building], minlength=size * size
    ).reshape(size, size).astype(np.float32)
    _write_raster(destroyed_fraction_path, lost, transform, grid_crs, None)

    return City(
        out_dir=out_dir,
        pre_files=tuple(pre_files),
        post_files=tuple(post_files),
        pre_dates=tuple(d for d, _, post in schedule if not post),
        post_dates=tuple(d for d, _, post in schedule if post),
        orbit_of=orbit_of,
        event_date=event_date,
        polarisations=polarisations,
        districts_path=districts_path,
        buildings_path=buildings_path,
        truth_buildings_path=truth_buildings_path,
        truth_districts_path=truth_districts_path,
        landcover_path=landcover_path,
        destroyed_fraction_path=destroyed_fraction_path,
        crs=grid_crs.to_string(),
        transform=transform,
        shape=(size, size),
        pixel_size_m=pixel_size_m,
        seed=seed,
        buildings=truth,
        districts=table,
    )


def _destruction_indices(destroyed: np.ndarray, n_post: int,
                         rng: np.random.Generator) -> np.ndarray:
    """The post-event acquisition each destroyed building first appears destroyed in (uniform
    over the post dates), -1 for the others."""
    at = np.full(destroyed.size, -1, np.int64)
    at[destroyed] = rng.integers(0, n_post, int(destroyed.sum()))
    return at


class _StagedDestruction:
    """Post-event images of a city destroyed over several dates: the building terms and the
    debris of the buildings destroyed by each post-event acquisition (one stage per index)."""

    def __init__(self, layout: Layout, radiometry: Radiometry, scene: Scene, plan: DamagePlan,
                 destroyed_at: np.ndarray | None, size: int, pixel_size_m: float,
                 oversample: int, model: RadarModel) -> None:
        self.layout, self.radiometry, self.scene, self.plan = layout, radiometry, scene, plan
        self.destroyed_at = destroyed_at
        self.size, self.pixel_size_m, self.oversample, self.model = (
            size, pixel_size_m, oversample, model)
        self._scenes: dict[int, Scene] = {}
        self._terms: dict[tuple[int, int], tuple[Radiometry, np.ndarray]] = {}

    def render(self, day: date, event_date: date, orbit: int, post_index: int,
               cross: tuple[bool, ...], rng: np.random.Generator) -> np.ndarray:
        assert self.destroyed_at is not None
        down = (self.destroyed_at >= 0) & (self.destroyed_at <= post_index)
        if post_index not in self._scenes:
            self._scenes = {post_index: replace(self.scene, debris=debris_fraction(
                self.layout, down, self.size, self.pixel_size_m, self.oversample, self.model))}
        scene = self._scenes[post_index]
        if (orbit, post_index) not in self._terms:
            # only the buildings already down lose their double bounce
            radiometry = replace(self.radiometry, drop_db=self.radiometry.drop_db * down)
            self._terms = {(orbit, post_index): (radiometry, building_terms(
                scene, radiometry, self.plan.is_new, orbit, True, self.model))}
        radiometry, terms = self._terms[(orbit, post_index)]
        return render(scene, self.layout, radiometry, terms,
                      day=float((day - event_date).days), orbit=orbit, is_post=True,
                      cross_pol=cross, model=self.model, rng=rng)


def _to_crs(
    transform: Affine, size: int, pixel_size_m: float
) -> Callable[[np.ndarray], np.ndarray]:
    """Local metres (from the extent's lower-left corner) to the grid's CRS."""
    offset = np.array([transform.c, transform.f - size * pixel_size_m])

    def shift(geoms: np.ndarray) -> np.ndarray:
        return np.asarray(shapely.transform(geoms, lambda xy: xy + offset))

    return shift


def _write_vectors(
    out_dir: Path, buildings: np.ndarray, districts: np.ndarray, district_ids: np.ndarray,
    names: np.ndarray, crs: CRS,
) -> tuple[Path, Path]:
    districts_path = out_dir / "districts.geojson"
    frame = gpd.GeoDataFrame(
        {"district_id": district_ids, "name": names},
        # densified so the edges stay where they were after reprojection to lon/lat
        geometry=shapely.segmentize(districts, 20.0), crs=crs,
    )
    frame.to_crs("EPSG:4326").to_file(districts_path, driver="GeoJSON", engine="pyogrio")
    buildings_path = out_dir / "buildings.gpkg"
    building_id = np.arange(1, buildings.size + 1, dtype=np.int64)
    gpd.GeoDataFrame({"building_id": building_id}, geometry=buildings, crs=crs).to_file(
        buildings_path, driver="GPKG", layer="buildings", engine="pyogrio"
    )
    return districts_path, buildings_path


def _building_truth(
    buildings: np.ndarray, layout: Layout, plan: DamagePlan, district_ids: np.ndarray,
    drop_db: np.ndarray, crs: CRS,
) -> gpd.GeoDataFrame:
    district_of = np.where(plan.district >= 0, district_ids[np.maximum(plan.district, 0)], None)
    return gpd.GeoDataFrame(
        {
            "building_id": np.arange(1, buildings.size + 1, dtype=np.int64),
            "area_m2": shapely.area(buildings),
            "destroyed": plan.destroyed,
            "is_new": plan.is_new,
            "is_shed": layout.is_shed,
            "district_id": district_of,
            "drop_db": drop_db.astype(np.float32),
        },
        geometry=buildings, crs=crs,
    )


def write_job_spec(
    city: City,
    out_dir: str | Path | None = None,
    method: str = "pwtt",
    *,
    cell_size_m: float | None = None,
    name: str = "job.toml",
) -> Path:
    """Write a job file for `city` into `out_dir` (default the city's folder); return its path.

    Paths in it are relative to `out_dir`; results go to `out_dir/out`. The job is checked
    with `parse_spec` before it is written. `cell_size_m` defaults to 10 pixels.
    """
    out_dir = Path(out_dir) if out_dir is not None else city.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path.absolute(), out_dir.absolute())).as_posix()

    pols = list(city.polarisations)
    params: dict[str, object]
    if method == "pwtt":
        per_orbit_pre = [sum(1 for p in city.pre_files if city.orbit_of[p] == o)
                         for o in city.orbits]
        params = {
            "polarisations": pols,
            # the default 3 where the best orbit has that many pre dates; a t-test needs 2
            "min_pre": min(3, max(2, *per_orbit_pre)),
            "min_post": 2,
        }
    elif method == "log-ratio":
        params = {"band": pols[0]}
    elif method == "nd-change":
        if len(pols) < 2:
            raise InputError("nd-change needs two bands; this city has one polarisation")
        params = {"a": pols[0], "b": pols[1], "direction": "both"}
    elif method == "cva":
        params = {"bands": pols}
    else:
        raise InputError(f"method '{method}' unknown; choose pwtt, log-ratio, nd-change or cva")

    data: dict[str, object] = {
        "method": method,
        "inputs": {
            "pre": [f"{rel(city.pre_files[0].parent)}/S1_*.tif"],
            "post": [f"{rel(city.post_files[0].parent)}/S1_*.tif"],
        },
        "districts": {"path": rel(city.districts_path), "id": "district_id", "name": "name"},
        # a footprint file without features would be refused
        **({"buildings": {"path": rel(city.buildings_path), "id": "building_id"}}
           if len(city.buildings) else {}),
        "grid": {"cell_size": float(cell_size_m or 10 * city.pixel_size_m)},
        "output": {"dir": "out"},
        "cluster": {"address": "local"},
        "method_params": params,
    }
    path = out_dir / name
    parse_spec(data, out_dir, source=str(path))  # never write a job the parser refuses
    rows, cols = city.shape
    header = (
        f"# Synthetic city (seed {city.seed}, {rows} x {cols} px at {city.pixel_size_m:g} m, "
        f"{city.crs}), written by ruinmap.synthetic.write_job_spec.\n"
        f"# Truth: {rel(city.truth_buildings_path)}, {rel(city.truth_districts_path)}\n\n"
    )
    path.write_text(header + dump_toml(data), encoding="utf-8")
    return path
