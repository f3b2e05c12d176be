"""Which scored unit each label speaks for.

With footprints (the job's buildings.parquet), by PWTT's rule: a footprint within `buffer_m`
of a damaged label point is damaged; one inside the labels' coverage (the convex hull of
every label point, grown by `buffer_m`) with no damaged point near is undamaged; footprints
outside the coverage are not labelled (nobody looked there). Polygon labels (xBD) mark the
footprint they overlap most, when that overlap is at least half the smaller of the two.
Without footprints, the score is read at the label points (the pixel holding each), or
averaged over each label polygon's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.features import rasterize
from rasterio.windows import Window, from_bounds

from ruinmap.cluster.validation.labels import Labels
from ruinmap.errors import InputError

__all__ = ["Marked", "mark_at_labels", "mark_footprints"]

#: least overlap of a footprint and a label polygon, as a share of the smaller of the two
MIN_POLYGON_OVERLAP = 0.5


@dataclass(frozen=True)
class Marked:
    """Scored units with their labels: `frame` has `score`, `damaged` (bool), `area_m2`
    (NaN for points), `district_id` (None: in no district), `building_row` (the footprint's
    row in buildings.parquet; -1 for label points and polygons) and the geometry."""

    frame: gpd.GeoDataFrame
    unit: str  # "footprints", "label points" or "label polygons"
    rule: str
    n_unlabelled: int  # scored units the labels do not speak for (outside their coverage)


def _metric_crs(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    if frame.crs is not None and frame.crs.is_geographic:
        return frame.to_crs(frame.estimate_utm_crs())
    return frame


def mark_footprints(buildings: gpd.GeoDataFrame, labels: Labels,
                    buffer_m: float) -> Marked:
    """Label the scored footprints of `buildings` (module doc)."""
    finite = np.isfinite(buildings["mean_score"].to_numpy(np.float64, na_value=np.nan))
    scored = buildings[finite]
    rows = np.flatnonzero(finite)
    if scored.empty:
        raise InputError("buildings.parquet holds no scored footprint; nothing to validate")
    feet = _metric_crs(scored.reset_index(drop=True))
    marks = labels.frame.to_crs(feet.crs)
    if labels.kind == "points":
        damaged, covered = _by_points(feet, marks, buffer_m)
        rule = (f"a footprint within {buffer_m:g} m of a damaged label point is damaged; "
                f"other footprints inside the labels' coverage (convex hull of the points "
                f"+ {buffer_m:g} m) are undamaged; footprints outside it are not used")
    else:
        damaged, covered = _by_polygons(feet, marks)
        rule = (f"a footprint takes the class of the label polygon it overlaps most, when "
                f"the overlap is >= {MIN_POLYGON_OVERLAP:.0%} of the smaller of the two")
    frame = gpd.GeoDataFrame({
        "score": feet["mean_score"].to_numpy(np.float64),
        "damaged": damaged,
        "area_m2": feet.geometry.area.to_numpy(),
        "district_id": feet["district_id"].to_numpy(object) if "district_id" in feet
        else np.full(len(feet), None, object),
        "building_row": rows,
    }, geometry=feet.geometry.to_numpy(), crs=feet.crs)[covered].reset_index(drop=True)
    if frame.empty:
        raise InputError(f"{labels.path}: no scored footprint lies where the labels are; "
                         "do the labels and the results cover the same place?")
    return Marked(frame=frame, unit="footprints", rule=rule,
                  n_unlabelled=int((~covered).sum()))


def _by_points(feet: gpd.GeoDataFrame, points: gpd.GeoDataFrame,
               buffer_m: float) -> tuple[np.ndarray, np.ndarray]:
    tree = shapely.STRtree(feet.geometry.to_numpy())
    hits = tree.query(points.geometry[points["damaged"].to_numpy(bool)].to_numpy(),
                      predicate="dwithin", distance=buffer_m)
    damaged = np.zeros(len(feet), bool)
    damaged[hits[1]] = True
    hull = shapely.convex_hull(shapely.multipoints(points.geometry.to_numpy()))
    coverage = shapely.buffer(hull, buffer_m)
    covered = shapely.intersects(feet.geometry.to_numpy(), coverage) | damaged
    return damaged, covered


def _by_polygons(feet: gpd.GeoDataFrame,
                 polygons: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    f_geom, l_geom = feet.geometry.to_numpy(), polygons.geometry.to_numpy()
    fi, li = shapely.STRtree(l_geom).query(f_geom, predicate="intersects")
    overlap = shapely.area(shapely.intersection(f_geom[fi], l_geom[li]))
    smaller = np.minimum(shapely.area(f_geom[fi]), shapely.area(l_geom[li]))
    keep = overlap >= MIN_POLYGON_OVERLAP * smaller
    pairs = pd.DataFrame({"f": fi[keep], "l": li[keep], "overlap": overlap[keep]})
    best = pairs.sort_values("overlap", ascending=False).drop_duplicates("f")
    damaged = np.zeros(len(feet), bool)
    covered = np.zeros(len(feet), bool)
    covered[best["f"].to_numpy()] = True
    damaged[best["f"].to_numpy()] = polygons["damaged"].to_numpy(bool)[best["l"].to_numpy()]
    return damaged, covered


def mark_at_labels(score_tif: str, labels: Labels,
                   districts: gpd.GeoDataFrame | None) -> Marked:
    """Score the labels themselves (no footprints): the pixel under each point, or the mean
    of the pixels whose centres fall in each polygon."""
    with rasterio.open(score_tif) as src:
        marks = labels.frame.to_crs(src.crs).reset_index(drop=True)
        if labels.kind == "points":
            xy = shapely.get_coordinates(marks.geometry.to_numpy())
            scores = np.array([v[0] for v in src.sample(xy, masked=True, indexes=1)],
                              dtype=object)
            score = np.array([np.nan if np.ma.is_masked(v) else float(v) for v in scores])
            unit, rule, area = "label points", "the score of the pixel holding each point", None
        else:
            score = _polygon_means(src, marks.geometry.to_numpy())
            unit, rule = "label polygons", "the mean score of the pixels inside each polygon"
            area = marks.to_crs(_metric_crs(marks).crs).geometry.area.to_numpy()
    finite = np.isfinite(score)
    frame = gpd.GeoDataFrame({
        "score": score, "damaged": marks["damaged"].to_numpy(bool),
        "area_m2": np.full(len(marks), np.nan) if area is None else area,
        "district_id": _district_of(marks, districts),
        "building_row": np.full(len(marks), -1, np.int64),
    }, geometry=marks.geometry.to_numpy(), crs=marks.crs)[finite].reset_index(drop=True)
    if frame.empty:
        raise InputError(f"{labels.path}: no label falls on a valid pixel of {score_tif}; do "
                         "the labels and the results cover the same place?")
    return Marked(frame=frame, unit=unit, rule=rule, n_unlabelled=int((~finite).sum()))


def _polygon_means(src: rasterio.DatasetReader, geoms: np.ndarray) -> np.ndarray:
    out = np.full(len(geoms), np.nan)
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    window = from_bounds(x0, y0, x1, y1, src.transform).round_offsets().round_lengths()
    window = window.intersection(Window(0, 0, src.width, src.height))
    if window.width < 1 or window.height < 1:
        return out
    values = src.read(1, window=window, masked=True).astype(np.float64).filled(np.nan)
    ids = rasterize(((g, i + 1) for i, g in enumerate(geoms)), out_shape=values.shape,
                    transform=src.window_transform(window), fill=0, dtype="int32")
    ok = (ids > 0) & np.isfinite(values)
    sums = np.bincount(ids[ok], weights=values[ok], minlength=len(geoms) + 1)[1:]
    counts = np.bincount(ids[ok], minlength=len(geoms) + 1)[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / counts, np.nan)
    return out


def _district_of(marks: gpd.GeoDataFrame, districts: gpd.GeoDataFrame | None) -> np.ndarray:
    if districts is None or "district_id" not in districts:
        return np.full(len(marks), None, object)
    zones = districts[["district_id", "geometry"]].to_crs(marks.crs)
    points = gpd.GeoDataFrame(geometry=marks.geometry.representative_point(), crs=marks.crs)
    joined = gpd.sjoin(points, zones, predicate="within", how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["district_id"].reindex(range(len(marks))).to_numpy(object)
