"""What map.png draws over the damage picture besides districts: building outlines (when few
enough to read at the map's scale) and an overview inset locating the map in lon/lat.

The inset is drawn offline like the map (no basemap): the analysed area's footprint as a red
box inside the outline of all districts, on a lon/lat graticule with the area's centre in
degrees, so a reader knows where on Earth and in the district set the map lies.
"""

from __future__ import annotations

from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from rasterio.crs import CRS
from shapely.geometry import box

__all__ = ["MAX_BUILDING_OUTLINES", "draw_building_outlines", "draw_overview_inset"]

#: above this many footprints their outlines would be a grey smear at map scale: left out
MAX_BUILDING_OUTLINES = 5000
_WGS84 = CRS.from_epsg(4326)


def _segments(geoms: Any) -> list[np.ndarray]:
    lines = shapely.get_parts(shapely.boundary(np.asarray(geoms)))
    return [np.asarray(line.coords)[:, :2] for line in lines if not line.is_empty]


def draw_building_outlines(ax: Any, buildings: gpd.GeoSeries | None, crs: CRS,
                           max_count: int = MAX_BUILDING_OUTLINES) -> int:
    """Draw the footprints' outlines (thin, dark, under the district lines) when there are
    at most `max_count`; returns how many were drawn (0 when none or too many)."""
    if buildings is None or not len(buildings) or len(buildings) > max_count:
        return 0
    shown = buildings if buildings.crs is None else buildings.to_crs(crs)
    geoms = shown.dropna()
    geoms = geoms[~geoms.is_empty]
    ax.add_collection(LineCollection(_segments(geoms.to_numpy()), colors="#303030",
                                     linewidths=0.25, alpha=0.8, zorder=2), autolim=False)
    return len(geoms)


def draw_overview_inset(fig: Figure, rect: tuple[float, float, float, float],
                        bounds: tuple[float, float, float, float], crs: CRS,
                        districts: gpd.GeoDataFrame | None) -> Any:
    """The inset axes at `rect` (figure fraction): the map's `bounds` (in `crs`) as a red box
    within the districts' outline, in lon/lat degrees."""
    area = gpd.GeoSeries([box(*bounds)], crs=crs).to_crs(_WGS84)
    ax = fig.add_axes(rect)
    ax.set_facecolor("#f4f4f4")
    context = area
    if districts is not None and len(districts) and districts.crs is not None:
        outline = gpd.GeoSeries([districts.to_crs(_WGS84).geometry.union_all()], crs=_WGS84)
        ax.add_collection(LineCollection(_segments(outline.to_numpy()), colors="#777777",
                                         linewidths=0.6))
        context = gpd.GeoSeries([outline.iloc[0], area.iloc[0]], crs=_WGS84)
    ax.add_collection(LineCollection(_segments(area.to_numpy()), colors="#c00000",
                                     linewidths=1.2, zorder=3))
    x0, y0, x1, y1 = context.total_bounds
    pad = max(x1 - x0, y1 - y0, 0.02) * 0.6  # some room around: a locator, not a zoom
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(cx - pad, cx + pad)
    ax.set_ylim(cy - pad, cy + pad)
    ax.set_aspect(1 / max(np.cos(np.radians(cy)), 0.01))
    ax.tick_params(labelsize=6, length=2, pad=1)
    ax.locator_params(nbins=3)
    ax.grid(color="#dddddd", linewidth=0.4)
    centre = area.iloc[0].centroid
    ax.set_title(f"Overview: {abs(centre.y):.3f}°{'N' if centre.y >= 0 else 'S'} "
                 f"{abs(centre.x):.3f}°{'E' if centre.x >= 0 else 'W'}", fontsize=7, pad=2)
    return ax
