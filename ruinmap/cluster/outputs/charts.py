"""The report figures besides the map: `districts.png` (damage per district as horizontal
bars, with the count intervals as error bars where the table has them) and `score_hist.png`
(the score's histogram over valid pixels, with the damage threshold and the class edges).

The histogram is counted window by window from the stored score (whole chunks, at most
`_STRIP_BYTES` at a time, `windows.raster_windows`): one pass for the range, one for the
counts, never the whole array.
Both figures use matplotlib's Agg canvas directly, like map.png (no pyplot state).
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ruinmap.cluster.outputs.palette import damage_colors, hex_color
from ruinmap.cluster.outputs.windows import raster_windows, source_chunk_shape
from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

__all__ = ["MAX_BARS", "DistrictBars", "ScoreHistogram", "district_bars",
           "render_district_chart", "render_score_histogram",
           "score_histogram"]

MAX_BARS = 40  # the most damaged districts shown; the rest are named in the caption
_STRIP_BYTES = 64 * 2**20
_DPI = 150


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of valid (finite) score pixels in `len(edges) - 1` equal bins."""

    counts: np.ndarray  # int64
    edges: np.ndarray  # float64

    @property
    def total(self) -> int:
        return int(self.counts.sum())


def _strips(source: Any) -> Any:
    """The valid values of `source` as float64, window by window (whole chunks, at most
    `_STRIP_BYTES` of float32 score each, so the same memory at any width)."""
    shape = (int(source.shape[0]), int(source.shape[1]))
    for rows, cols in raster_windows(shape, 4, max_bytes=_STRIP_BYTES,
                                     chunks=source_chunk_shape(source)):
        window = np.asarray(source[rows, cols], dtype=np.float64)
        yield window[np.isfinite(window)]


def score_histogram(source: Any, bins: int = 120) -> ScoreHistogram:
    """The histogram of a 2-D score (numpy, zarr, dask; NaN = nodata), read in row strips.

    Bins span the valid minimum to maximum (one bin of width 1 around a constant score);
    no valid pixel gives empty counts.
    """
    if len(getattr(source, "shape", ())) != 2:
        raise InputError(f"score histogram: expected a 2-D score, got shape {source.shape}")
    lo, hi = math.inf, -math.inf
    for valid in _strips(source):
        if valid.size:
            lo, hi = min(lo, float(valid.min())), max(hi, float(valid.max()))
    if lo > hi:
        return ScoreHistogram(np.zeros(0, np.int64), np.zeros(1))
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    counts = np.zeros(bins, np.int64)
    for valid in _strips(source):
        counts += np.histogram(valid, bins=edges)[0]
    return ScoreHistogram(counts, edges)


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, dst: Path) -> Path:
    with atomic_path(dst) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    return dst


def render_score_histogram(dst: str | os.PathLike[str], histogram: ScoreHistogram, *,
                           threshold: float, class_edges: Sequence[float],
                           class_names: Sequence[str], score_label: str, title: str,
                           credit: str | None = None) -> Path:
    """Draw score_hist.png: bars of `histogram` (log count axis), the threshold as a dashed
    black line and each class's lower edge in its class colour."""
    dst = Path(dst)
    fig = _figure(9.0, 5.0)
    ax = fig.add_axes((0.09, 0.17, 0.62, 0.72))
    if histogram.total:
        ax.stairs(histogram.counts, histogram.edges, fill=True, color="#8c9fb5")
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.8)
    else:
        ax.text(0.5, 0.5, "no valid pixels", ha="center", transform=ax.transAxes)
    for edge, name, color in zip(class_edges, class_names,
                                 damage_colors(len(class_names)), strict=False):
        ax.axvline(edge, color=hex_color(color), linewidth=2.2, label=f"{name} from {edge:g}")
    # on top: the threshold is often also a class edge
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1.2, zorder=5,
               label=f"damaged above {threshold:g}")
    ax.set_xlabel(score_label)
    ax.set_ylabel("pixels (log scale)")
    ax.grid(axis="y", color="#eeeeee")
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, fontsize=9)
    fig.text(0.02, 0.97, title, fontsize=13, fontweight="bold", va="top")
    note = f"{histogram.total:,} valid pixels"
    fig.text(0.02, 0.02, textwrap.fill(note + (f". {credit}" if credit else ""), 150),
             fontsize=7.5, color="#444444", va="bottom")
    return _save(fig, dst)


@dataclass(frozen=True)
class DistrictBars:
    """What districts.png draws: bars, most damaged last (drawn on top), and their errors."""

    names: np.ndarray
    values: np.ndarray
    errors: np.ndarray | None  # (2, n): below and above each value; None without intervals
    is_buildings: bool  # damaged buildings, else damaged km2
    interval_note: str
    left_out: int


def district_bars(table: pd.DataFrame, max_bars: int = MAX_BARS) -> DistrictBars:
    """The `max_bars` most damaged districts of a district table: damaged buildings (with
    `buildings_damaged_low` / `_high` as errors where given) or, without buildings, km2."""
    is_buildings = bool("buildings_damaged" in table and
                        pd.to_numeric(table["buildings_damaged"], errors="coerce").notna().any())
    column = "buildings_damaged" if is_buildings else "damaged_km2"
    values = pd.to_numeric(table[column], errors="coerce").fillna(0.0).to_numpy(float)
    names = (table["name"] if "name" in table else table["district_id"]).astype(str).to_numpy()
    order = np.argsort(-values, kind="stable")[:max_bars][::-1]
    errors, note = None, ""
    if is_buildings and {"buildings_damaged_low", "buildings_damaged_high"} <= set(table):
        low = pd.to_numeric(table["buildings_damaged_low"], errors="coerce").to_numpy(float)
        high = pd.to_numeric(table["buildings_damaged_high"], errors="coerce").to_numpy(float)
        if np.isfinite(low[order]).any():
            errors = np.nan_to_num(np.vstack([np.clip(values - low, 0, None)[order],
                                              np.clip(high - values, 0, None)[order]]))
            level = table.get("buildings_damaged_level")
            kind = table.get("buildings_damaged_interval")
            level_text = (f"{100 * float(level.dropna().iloc[0]):g} % "
                          if level is not None and level.notna().any() else "")
            kind_text = (f" ({kind.dropna().iloc[0]})"
                         if kind is not None and kind.notna().any() else "")
            note = f"Error bars: {level_text}interval of the count{kind_text}. "
    return DistrictBars(names[order], values[order], errors, is_buildings, note,
                        len(values) - len(order))


def render_district_chart(dst: str | os.PathLike[str], table: pd.DataFrame, *, title: str,
                          credit: str | None = None, max_bars: int = MAX_BARS) -> Path:
    """Draw districts.png: the bars of `district_bars(table, max_bars)` as horizontal bars
    with error bars where the table has intervals."""
    dst = Path(dst)
    bars = district_bars(table, max_bars)
    rows = np.arange(len(bars.values))
    fig = _figure(9.0, max(3.0, 1.6 + 0.26 * len(rows)))
    height = fig.get_figheight()
    ax = fig.add_axes((0.3, 1.0 / height, 0.65, 1 - 1.7 / height))
    ax.barh(rows, bars.values, color="#d7301f", xerr=bars.errors,
            error_kw={"ecolor": "#333333", "elinewidth": 0.8, "capsize": 2})
    ax.set_yticks(rows, bars.names, fontsize=8)
    ax.set_xlabel("damaged buildings" if bars.is_buildings else "damaged area (km²)")
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    fig.text(0.02, 1 - 0.15 / height, title, fontsize=13, fontweight="bold", va="top")
    note = bars.interval_note + (f"{bars.left_out} less damaged districts not shown; see "
                                 "districts.csv. " if bars.left_out > 0 else "")
    fig.text(0.02, 0.08 / height, textwrap.fill(note + (credit or ""), 150),
             fontsize=7.5, color="#444444", va="bottom")
    return _save(fig, dst)
