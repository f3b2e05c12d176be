"""map.png: a one-page overview map of the damage classes (or score) with districts.

The map shows a downsampled preview of the class raster (or the score) on the raster's own
CRS, the district outlines labelled with name and damaged share (labels that would collide
are dropped, most damaged first kept), building outlines when few enough to read
(`map_layers`), a legend, an overview inset, a scale bar in ground metres, a north arrow, a
title, a subtitle (the imagery dates) and a caption (method, CRS, the source credit line).
It is drawn with matplotlib's Agg backend, offline: no basemap tiles are fetched. The Agg
canvas is used directly, never pyplot, so there is no global backend switch, no display is
needed and a figure is freed with its last reference (pyplot keeps figures until closed).

The scale bar is right in any CRS: ground metres per map unit are measured along the WGS84
ellipsoid (pyproj.Geod) between two points at the map's centre, so degrees (EPSG:4326),
feet (EPSG:2263) and the stretched metres of Web Mercator all give a true bar.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import matplotlib.patches as mpatches
import matplotlib.patheffects as path_effects
import numpy as np
import shapely
from affine import Affine
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from pyproj import CRS as ProjCRS
from rasterio.crs import CRS

from ruinmap.cluster.geo.units import ground_metres_per_unit
from ruinmap.cluster.outputs.map_layers import draw_building_outlines, draw_overview_inset
from ruinmap.cluster.outputs.palette import NONE_COLOR, damage_colors
from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

_FIG_WIDTH_IN = 12.0
_DPI = 150
_MAP_FRACTION = 0.72  # of the figure's width; the rest holds the legend
_MAX_MAP_HEIGHT_IN = 11.0
_MIN_MAP_HEIGHT_IN = 4.0
NONE_LABEL = "no damage detected"
NODATA_LABEL = "no data"
#: pixels a built-up mask leaves out, and nodata, on a masked map: a darker grey than class 0
#: ("no damage detected"), so built-up land without damage stands out from the rest
MASKED_LABEL = "not built-up, or no data"
MASKED_COLOR = "#a6a6a6"


# ---------------------------------------------------------------------------------------------
# scale


def nice_scale_length(max_metres: float) -> float:
    """The largest 1, 2 or 5 x 10^n metres not above `max_metres` (a scale bar's length)."""
    if not (max_metres > 0 and math.isfinite(max_metres)):
        raise InputError(f"scale bar: cannot choose a length for {max_metres} m")
    power = 10 ** math.floor(math.log10(max_metres))
    for step in (5, 2, 1):
        if step * power <= max_metres:
            return float(step * power)
    return float(power)


def _format_metres(metres: float) -> str:
    if metres >= 1000:
        km = metres / 1000
        return f"{km:g} km"
    if metres >= 1:
        return f"{metres:g} m"
    return f"{metres * 100:g} cm"


# ---------------------------------------------------------------------------------------------
# the map


def render_map(
    dst: str | os.PathLike[str],
    *,
    score_preview: np.ndarray,
    preview_transform: Affine,
    crs: CRS | str,
    districts: gpd.GeoDataFrame | None,
    class_names: Sequence[str],
    title: str,
    caption: str | None = None,
    score_label: str = "damage score",
    max_labels: int = 60,
    subtitle: str | None = None,
    credit: str | None = None,
    buildings: gpd.GeoSeries | None = None,
    inset: bool = True,
    masked: bool = False,
) -> Path:
    """Draw map.png at `dst` (atomically) and return its path.

    score_preview: 2-D preview (e.g. from `downsample_for_preview`); uint8 = damage classes
        (0 none, 1..k `class_names`, 255 nodata), float = a continuous score (NaN nodata,
        drawn with a colour bar labelled `score_label`).
    preview_transform: the preview's affine transform (north-up) in `crs`.
    districts: district polygons (any CRS; reprojected to `crs` if needed) with
        `district_id`, optional `name` and `damaged_fraction` (0..1); None for no districts.
    class_names: names of damage classes 1..k (as in the job's spec).
    title: the map's title; caption: small text under the map (method, date range, source
        attribution), wrapped to the figure's width; the CRS is appended.
    max_labels: at most this many district labels (most damaged first; colliding ones skipped).
    subtitle: a line under the title (the imagery dates); credit: the source credit line,
        last in the caption.
    buildings: footprints whose outlines are drawn when at most
        `map_layers.MAX_BUILDING_OUTLINES`; inset: draw the overview inset.
    masked: the score covers built-up pixels only (a built-up mask); the other pixels are
        drawn grey ("not built-up or no data") and district labels give the share of the
        built-up area.
    """
    dst = Path(dst)
    preview = np.asarray(score_preview)
    if preview.ndim != 2 or preview.size == 0:
        raise InputError(
            f"{dst.name}: score_preview must be a non-empty 2-D array, got shape {preview.shape}"
        )
    t = Affine(*tuple(preview_transform)[:6])
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        raise InputError(f"{dst.name}: preview_transform {tuple(t)[:6]} is not north-up")
    rio_crs = CRS.from_user_input(crs)
    h, w = preview.shape
    left, top = t.c, t.f
    right, bottom = left + t.a * w, top + t.e * h
    is_classes = preview.dtype.kind in "iub"
    geographic = rio_crs.is_geographic
    cx, cy = (left + right) / 2, (top + bottom) / 2
    aspect = 1.0 / max(math.cos(math.radians(cy)), 0.01) if geographic else 1.0

    map_w_in = _FIG_WIDTH_IN * _MAP_FRACTION
    map_h_in = map_w_in * (top - bottom) * aspect / (right - left)
    map_h_in = min(max(map_h_in, _MIN_MAP_HEIGHT_IN), _MAX_MAP_HEIGHT_IN)
    top_in, bottom_in = 0.75, 0.95
    fig_h = map_h_in + top_in + bottom_in
    fig = Figure(figsize=(_FIG_WIDTH_IN, fig_h), dpi=_DPI, facecolor="white")
    FigureCanvasAgg(fig)  # a canvas of its own: no pyplot state, safe in threads
    ax = fig.add_axes((0.02, bottom_in / fig_h, _MAP_FRACTION, map_h_in / fig_h))
    side = fig.add_axes(
        (0.02 + _MAP_FRACTION + 0.02, bottom_in / fig_h, 1 - _MAP_FRACTION - 0.06, map_h_in / fig_h)
    )
    side.set_axis_off()

    ax.set_facecolor(MASKED_COLOR if masked else "white")
    extent = (left, right, bottom, top)
    if is_classes:
        handles = _draw_classes(ax, preview, extent, class_names)
        if masked:
            handles[-1] = mpatches.Patch(facecolor=MASKED_COLOR, edgecolor="#888888",
                                         label=MASKED_LABEL)
    else:
        handles = _draw_score(ax, side, fig, preview, extent, score_label)
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect(aspect)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#555555")

    outlined = draw_building_outlines(ax, buildings, rio_crs)
    shown = None
    if districts is not None and len(districts):
        shown = districts if districts.crs is None else districts.to_crs(rio_crs)
        _draw_outlines(ax, shown)
    ax.apply_aspect()
    obstacles = [
        _draw_scale_bar(ax, rio_crs, (left, bottom, right, top), cx, cy),
        _draw_north_arrow(ax),
    ]
    labelled = 0
    if shown is not None:
        labelled = _label_districts(
            fig, ax, shown, (left, bottom, right, top), max_labels, obstacles,
            empty="no built-up data" if masked else NODATA_LABEL,
        )

    legend_title = "Damage class" if is_classes else None
    if handles:
        side.legend(
            handles=handles,
            loc="upper left",
            title=legend_title,
            frameon=False,
            fontsize=10,
            title_fontsize=11,
            alignment="left",
            borderaxespad=0,
        )
    if inset:
        side_x, side_w = 0.02 + _MAP_FRACTION + 0.02, 1 - _MAP_FRACTION - 0.06
        inset_h = min(2.0, 0.38 * map_h_in)
        draw_overview_inset(fig, (side_x + 0.02, (bottom_in + 0.3 * map_h_in) / fig_h,
                                  side_w - 0.02, inset_h / fig_h),
                            (left, bottom, right, top), rio_crs, districts)
    notes = []
    if outlined:
        notes.append(f"Thin grey outlines: {outlined} building footprints.")
    if districts is not None and len(districts):
        notes.append("Outlines: districts.")
        if labelled:
            area = "built-up" if masked else "analysed"
            notes.append(
                f"Labels: district name and the share of its {area} area classed as damaged."
            )
        if labelled < len(districts):
            notes.append(
                f"{len(districts) - labelled} of {len(districts)} districts unlabelled "
                "to keep labels legible; see districts.csv."
            )
    if notes:
        side.text(
            0,
            0,
            "\n".join(textwrap.fill(n, 34) for n in notes),
            fontsize=8.5,
            color="#333333",
            va="bottom",
            ha="left",
            transform=side.transAxes,
        )

    fig.text(0.02, 1 - 0.22 / fig_h, title, fontsize=16, fontweight="bold", va="top", ha="left")
    if subtitle:
        fig.text(0.02, 1 - 0.52 / fig_h, subtitle, fontsize=10, color="#333333", va="top",
                 ha="left")
    crs_text = f"CRS: {rio_crs.to_string() if rio_crs.to_epsg() else _crs_name(rio_crs)}"
    if rio_crs.to_epsg():
        crs_text = f"CRS: {_crs_name(rio_crs)} (EPSG:{rio_crs.to_epsg()})"
    lines = [caption.strip()] if caption else []
    lines.append(crs_text)
    if credit:
        lines.append(credit)
    wrapped = "\n".join(textwrap.fill(line, 140) for line in lines)
    fig.text(
        0.02, (bottom_in - 0.12) / fig_h, wrapped, fontsize=8, color="#444444", va="top", ha="left"
    )

    with atomic_path(dst) as tmp:
        fig.savefig(tmp, format="png", dpi=_DPI, facecolor="white")
    return dst


def _crs_name(crs: CRS) -> str:
    try:
        return str(ProjCRS.from_wkt(crs.to_wkt()).name)
    except Exception:
        return crs.to_string()


def _draw_classes(
    ax: Any,
    preview: np.ndarray,
    extent: tuple[float, float, float, float],
    class_names: Sequence[str],
) -> list[Any]:
    n = len(class_names)
    if n < 1:
        raise InputError("map: class_names is empty; give one name per damage class")
    colors = [NONE_COLOR, *damage_colors(n)]
    rgba = [(c[0] / 255, c[1] / 255, c[2] / 255, c[3] / 255) for c in colors]
    cmap = ListedColormap(rgba)
    norm = BoundaryNorm(np.arange(-0.5, n + 1.5), n + 1)
    values = np.ma.masked_where((preview > n) | (preview < 0), preview)
    ax.imshow(
        values,
        cmap=cmap,
        norm=norm,
        extent=extent,
        origin="upper",
        interpolation="nearest",
        zorder=1,
    )
    labels = [NONE_LABEL, *class_names]
    handles = [
        mpatches.Patch(facecolor=c, edgecolor="#888888", label=lab)
        for c, lab in zip(rgba, labels, strict=True)
    ]
    handles.append(mpatches.Patch(facecolor="white", edgecolor="#888888", label=NODATA_LABEL))
    return handles


def _draw_score(
    ax: Any,
    side: Any,
    fig: Figure,
    preview: np.ndarray,
    extent: tuple[float, float, float, float],
    label: str,
) -> list[Any]:
    values = np.ma.masked_invalid(preview.astype(np.float32))
    finite = values.compressed()
    vmin, vmax = np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0)
    if not vmax > vmin:
        vmax = vmin + 1.0
    image = ax.imshow(
        values,
        cmap="magma_r",
        vmin=vmin,
        vmax=vmax,
        extent=extent,
        origin="upper",
        interpolation="nearest",
        zorder=1,
    )
    pos = side.get_position()
    cax = fig.add_axes((pos.x0, pos.y0 + pos.height * 0.38, 0.025, pos.height * 0.5))
    bar = fig.colorbar(image, cax=cax, extend="both")
    bar.set_label(label, fontsize=10)
    return [mpatches.Patch(facecolor="white", edgecolor="#888888", label=NODATA_LABEL)]


def _draw_outlines(ax: Any, districts: gpd.GeoDataFrame) -> None:
    lines = shapely.get_parts(districts.geometry.boundary.dropna().to_numpy())
    segments = [np.asarray(line.coords)[:, :2] for line in lines if not line.is_empty]
    ax.add_collection(
        LineCollection(segments, colors="#222222", linewidths=0.7, zorder=3), autolim=False
    )


def _label_districts(
    fig: Figure,
    ax: Any,
    districts: gpd.GeoDataFrame,
    bounds: tuple[float, float, float, float],
    max_labels: int,
    obstacles: Sequence[Any],
    empty: str = NODATA_LABEL,
) -> int:
    """Label each district with its name and damaged share (`empty` where it has none)."""
    view = shapely.box(*bounds)
    fraction = (
        districts["damaged_fraction"].to_numpy(dtype=float)
        if "damaged_fraction" in districts.columns
        else np.full(len(districts), np.nan)
    )
    order = np.argsort(np.where(np.isnan(fraction), -1.0, fraction), kind="stable")[::-1]
    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    renderer = canvas.get_renderer()
    placed: list[Any] = [artist.get_window_extent(renderer) for artist in obstacles]
    blocked = len(placed)
    halo = [path_effects.withStroke(linewidth=2.8, foreground="white")]
    for i in order:
        if len(placed) - blocked >= max_labels:
            break
        geom = districts.geometry.iloc[i]
        if geom is None or geom.is_empty:
            continue
        inside = geom.intersection(view)
        if inside.is_empty:
            continue
        row = districts.iloc[i]
        name = row.get("name") if "name" in districts.columns else None
        if name is None or (isinstance(name, float) and math.isnan(name)) or str(name) == "":
            name = row.get("district_id", "")
        share = empty if math.isnan(fraction[i]) else _share(fraction[i])
        text = ax.text(
            0,
            0,
            f"{textwrap.shorten(str(name), 28)}\n{share}",
            fontsize=8,
            ha="center",
            va="center",
            zorder=5,
            color="#111111",
            path_effects=halo,
            linespacing=1.1,
            clip_on=True,
        )
        for point in _label_points(inside):
            text.set_position((point.x, point.y))
            box = text.get_window_extent(renderer).expanded(1.08, 1.15)
            fits = ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1)
            if fits and not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
        else:
            text.remove()
    return len(placed) - blocked


def _label_points(area: Any) -> list[Any]:
    """Where a district's label may go, best first: a point surely inside (representative
    point), the centroid if inside, then inner points of a 3 x 3 grid over its bounds."""
    points = [area.representative_point()]
    centroid = area.centroid
    if area.contains(centroid):
        points.append(centroid)
    x0, y0, x1, y1 = area.bounds
    for fy in (0.5, 0.25, 0.75):
        for fx in (0.5, 0.25, 0.75):
            point = shapely.Point(x0 + (x1 - x0) * fx, y0 + (y1 - y0) * fy)
            if area.contains(point):
                points.append(point)
    return points


def _share(fraction: float) -> str:
    pct = fraction * 100
    if 0 < pct < 0.5:
        return "<1% damaged"
    return f"{pct:.0f}% damaged"


def _draw_scale_bar(
    ax: Any, crs: CRS, bounds: tuple[float, float, float, float], cx: float, cy: float
) -> Any:
    """Draw a segmented bar of a round ground length, lower left; returns its frame."""
    left, bottom, right, top = bounds
    m_per_unit = ground_metres_per_unit(crs, cx, cy)
    width_m = (right - left) * m_per_unit
    length_m = nice_scale_length(width_m * 0.25)
    length_units = length_m / m_per_unit
    x0 = left + (right - left) * 0.04
    y0 = bottom + (top - bottom) * 0.05
    bar_h = (top - bottom) * 0.012
    lead = round(length_m / 10 ** math.floor(math.log10(length_m)))
    segments = {1: 2, 2: 4, 5: 5}.get(lead, 2)
    seg = length_units / segments
    pad_x, pad_y = (right - left) * 0.015, (top - bottom) * 0.02
    frame = ax.add_patch(
        mpatches.FancyBboxPatch(
            (x0 - pad_x, y0 - pad_y),
            length_units + 3.5 * pad_x,
            bar_h + 2 * pad_y + (top - bottom) * 0.045,
            boxstyle="round,pad=0",
            facecolor="white",
            edgecolor="#999999",
            alpha=0.9,
            zorder=6,
        )
    )
    for k in range(segments):
        ax.add_patch(
            mpatches.Rectangle(
                (x0 + k * seg, y0),
                seg,
                bar_h,
                facecolor="#222222" if k % 2 == 0 else "white",
                edgecolor="#222222",
                linewidth=0.8,
                zorder=7,
            )
        )
    ax.text(
        x0, y0 + bar_h + (top - bottom) * 0.012, "0", fontsize=8, ha="center", va="bottom", zorder=7
    )
    ax.text(
        x0 + length_units,
        y0 + bar_h + (top - bottom) * 0.012,
        _format_metres(length_m),
        fontsize=8,
        ha="center",
        va="bottom",
        zorder=7,
    )
    return frame


def _draw_north_arrow(ax: Any) -> Any:
    """An arrow and N, upper right, haloed so they read on any class colour."""
    arrow = ax.annotate(
        "N",
        xy=(0.96, 0.95),
        xytext=(0.96, 0.86),
        xycoords="axes fraction",
        textcoords="axes fraction",
        ha="center",
        va="center",
        fontsize=11,
        fontweight="bold",
        zorder=7,
        arrowprops={"arrowstyle": "-|>", "facecolor": "#222222", "lw": 1.5},
        path_effects=[path_effects.withStroke(linewidth=3, foreground="white")],
    )
    arrow.arrow_patch.set_path_effects([path_effects.withStroke(linewidth=4, foreground="white")])
    return arrow
