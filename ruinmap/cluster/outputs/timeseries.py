"""Dated damage products, knowing nothing about jobs: `damage_date.tif` (the date a pixel's
change became significant and the earliest date of its bracket, days since `EPOCH`), the
per-district time series (damaged buildings and damaged area by post-event date) and its
figure.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
from affine import Affine
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from pyproj import CRS
from rasterio.enums import ColorInterp
from rasterio.io import MemoryFile

from ruinmap.cluster.storage.durable import atomic_path

__all__ = ["DATE_NODATA", "EPOCH", "MAX_LINES", "district_timeseries",
           "render_timeseries_chart", "write_date_cog"]

#: day 0 of damage_date.tif (recorded in its metadata as DATE_EPOCH and the band units)
EPOCH = date(1970, 1, 1)
#: damage_date.tif where a pixel's change never became significant
DATE_NODATA = -9999
MAX_LINES = 8  # the most damaged districts drawn; the total is always drawn
_DPI = 150


def write_date_cog(dst: str | os.PathLike[str], date_days: np.ndarray,
                   earliest_days: np.ndarray, is_dated: np.ndarray, *, transform: Affine,
                   crs: CRS | str, tags: Mapping[str, object]) -> Path:
    """A two-band int32 COG: band 1 `damage_date`, band 2 `damage_date_earliest`, days since
    EPOCH, DATE_NODATA where `is_dated` is False. Written whole, atomically."""
    dst = Path(dst)
    rows, cols = date_days.shape
    stack = np.stack([np.where(is_dated, date_days, DATE_NODATA),
                      np.where(is_dated, earliest_days, DATE_NODATA)]).astype(np.int32)
    profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 2, "dtype": "int32",
               "crs": crs, "transform": transform, "nodata": DATE_NODATA,
               "photometric": "MINISBLACK"}
    units = f"days since {EPOCH.isoformat()}"
    with MemoryFile() as memory, memory.open(**profile) as mem:
        mem.write(stack)
        mem.descriptions = ("damage_date", "damage_date_earliest")
        mem.colorinterp = [ColorInterp.gray, ColorInterp.undefined]
        mem.update_tags(DATE_EPOCH=EPOCH.isoformat(), DATE_UNITS=units,
                        **{k: str(v) for k, v in tags.items()})
        for band in (1, 2):
            mem.set_band_unit(band, units)
        with atomic_path(dst) as tmp:
            # deflate level 4 as damage.tif's classes: within 3 % of level 6's size, twice
            # as fast (0.92 against 1.93 s at 2048²)
            rasterio.shutil.copy(mem, tmp, driver="COG", compress="deflate", predictor="2",
                                 level="4", blocksize="512")
    dst.with_name(dst.name + ".aux.xml").unlink(missing_ok=True)
    return dst


def district_timeseries(post_dates: Sequence[date], district_ids: np.ndarray,
                        district_names: np.ndarray, *, damaged_km2: np.ndarray,
                        all_damaged_km2: np.ndarray, buildings: pd.DataFrame | None,
                        building_pairs: tuple[np.ndarray, np.ndarray] | None) -> pd.DataFrame:
    """One row per district and post-event date (plus district "all"): cumulative damage
    dated by then.

    `damaged_km2` (districts, dates): the area of the damaged pixels whose confirmed date is
    each date, per district holding them (a pixel counts in every overlapping district);
    `all_damaged_km2` (dates): the same over the whole grid, each pixel once. With
    `buildings` (per footprint, columns date (index), status (0/1/2), damaged (bool)) and
    `building_pairs` (footprint, district) (every district holding a footprint's centroid):
    `buildings_damaged` counts the damaged buildings confirmed by then,
    `buildings_damaged_any` those dated at all (confirmed or uncertain); "all" counts each
    building once, in a district or not.
    """
    n_dates, n_districts = len(post_dates), len(district_ids)
    area = np.vstack([np.asarray(damaged_km2, np.float64).reshape(n_districts, n_dates),
                      np.asarray(all_damaged_km2, np.float64).reshape(1, n_dates)])
    counts: dict[str, np.ndarray] = {}
    if buildings is not None:
        which, district = building_pairs if building_pairs is not None else (
            np.empty(0, np.int64), np.empty(0, np.int64))
        date_idx = buildings["date"].to_numpy(np.int64)
        for column, lowest in (("buildings_damaged", 2), ("buildings_damaged_any", 1)):
            hit = buildings["damaged"].to_numpy(bool) & (buildings["status"].to_numpy() >= lowest)
            grid = np.zeros((n_districts + 1, n_dates))
            pair_hit = hit[which]
            np.add.at(grid, (district[pair_hit], date_idx[which][pair_hit]), 1)
            grid[n_districts] = np.bincount(date_idx[hit], minlength=n_dates)[:n_dates]
            counts[column] = np.cumsum(grid, axis=1).astype(np.int64)
    ids = [*map(str, district_ids), "all"]
    names = [*map(str, district_names), "all districts"]
    rows = []
    cumulative_area = np.cumsum(area, axis=1)
    for d in range(n_districts + 1):
        for t, day in enumerate(post_dates):
            row: dict[str, object] = {"district_id": ids[d], "name": names[d],
                                      "date": day.isoformat(),
                                      "damaged_km2": round(float(cumulative_area[d, t]), 6)}
            for column, grid in counts.items():
                row[column] = int(grid[d, t])
            rows.append(row)
    return pd.DataFrame(rows)


def render_timeseries_chart(dst: str | os.PathLike[str], table: pd.DataFrame, *, title: str,
                            credit: str | None = None, max_lines: int = MAX_LINES) -> Path:
    """districts_timeseries.png: cumulative damaged buildings (else km2) by date, the total
    and the `max_lines` most damaged districts."""
    dst = Path(dst)
    column = ("buildings_damaged" if "buildings_damaged" in table else "damaged_km2")
    frame = table.assign(date=pd.to_datetime(table["date"]))
    last = frame[frame["date"] == frame["date"].max()]
    ranked = last[last["district_id"] != "all"].sort_values(column, ascending=False,
                                                           kind="stable")
    shown = ["all", *ranked["district_id"].head(max_lines)]
    fig = Figure(figsize=(9.0, 5.0), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.09, 0.17, 0.6, 0.72))
    for district in shown:
        rows = frame[frame["district_id"] == district]
        is_total = district == "all"
        ax.plot(rows["date"], rows[column], marker="o", markersize=3,
                linewidth=2.4 if is_total else 1.2, color="black" if is_total else None,
                label=str(rows["name"].iloc[0]))
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("damaged buildings (cumulative)" if column == "buildings_damaged"
                  else "damaged area, km² (cumulative)")
    ax.grid(color="#eeeeee")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=8)
    fig.text(0.02, 0.97, title, fontsize=13, fontweight="bold", va="top")
    note = ("Damage dated to the first post-event acquisition where the change became "
            "significant; see districts_timeseries.csv for every district. ")
    fig.text(0.02, 0.02, textwrap.fill(note + (credit or ""), 150), fontsize=7.5,
             color="#444444", va="bottom")
    with atomic_path(dst) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    return dst
