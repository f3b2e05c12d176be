"""The results page: `/ui/` lists jobs; a finished job shows its district table and a map.

Offline: the HTML, script, style sheet and MapLibre GL JS (`static/vendor/maplibre-gl/`) are
files of this package served by the service itself; the map reads these routes:

- `GET /jobs/{jobId}/map-data`: the districts (GeoJSON, EPSG:4326) with their table columns,
  the field they are coloured by and the ramp's top fitted to the data, the raster's bounds,
  the tile URL templates, the damage classes' legend, the basemap setting;
- `GET /jobs/{jobId}/tiles/{layer}/{z}/{x}/{y}.png`: damage or score tiles (`tiles.py`);
- `GET /jobs/{jobId}/buildings.geojson?bbox=`: footprints in a view, capped, damaged first;
- `GET /jobs/{jobId}/grid.png`: the damage grid as one coloured PNG (kept for clients).
"""

from __future__ import annotations

import functools
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from shapely.geometry import box

from ruinmap.cluster.service.tiles import (
    LAYERS,
    RAMP,
    TileOutside,
    class_legend,
    ramp_rgba,
    render_tile,
)

__all__ = ["RAMP", "add_page_routes", "ramp_rgba"]

STATIC = Path(__file__).with_name("static")
#: Building outlines are drawn from this zoom on, at most this many per view.
BUILDINGS_MIN_ZOOM = 14
BUILDINGS_MAX = 5000
VENDOR = STATIC / "vendor" / "maplibre-gl"
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
          ".txt": "text/plain; charset=utf-8"}


def scale_max(values: np.ndarray) -> float:
    """The ramp's upper end: the 99th percentile of the finite values, rounded up to a
    'nice' step, at least 0.05 (so a nearly undamaged city is not painted dark red)."""
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99)) if finite.size else 0.0
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if top <= step:
            return step
    return math.ceil(top)


def _grid(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float], str]:
    import rasterio

    with rasterio.open(path) as src:
        fraction = src.read(1).astype(np.float64)
        bounds = (src.bounds.left, src.bounds.bottom, src.bounds.right, src.bounds.top)
        crs = src.crs.to_wkt() if src.crs else ""
    return fraction, bounds, crs


def count_max(values: np.ndarray) -> float:
    """The ramp's upper end for counts: the largest value rounded up to 1, 2 or 5 x 10^k."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    if top <= 1:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if top <= m * magnitude))


def colour_field(districts: Any) -> str:
    """What the district layer is coloured by: damaged buildings where the job had building
    footprints, else the damaged share of the area."""
    if "buildings_damaged" in districts and "buildings" in districts \
            and float(np.nansum(districts["buildings"].to_numpy(np.float64))) > 0:
        return "buildings_damaged"
    return "damaged_fraction"


def _bounds_4326(path: Path) -> list[float]:
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        return list(transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21))


def map_data(output_dir: Path, files: dict[str, str], job_id: str,
             basemap_url: str = "") -> dict[str, Any]:
    """What the page's map and table need (see the module docstring)."""
    import geopandas as gpd

    districts = gpd.read_parquet(output_dir / files["districts_parquet"]).to_crs("EPSG:4326")
    field = colour_field(districts)
    values = districts[field].to_numpy(dtype=np.float64) if field in districts \
        else np.array([])
    vmax = scale_max(values) if field.endswith("fraction") else count_max(values)
    features = json.loads(districts.to_json(na="null", drop_id=True))
    columns = [c for c in districts.columns if c != districts.geometry.name]
    raster = "damage_tif" if "damage_tif" in files else "grid_tif"
    layers = [layer for layer, name in (("damage", "damage_tif"), ("score", "score_tif"))
              if name in files]
    legend = class_legend(output_dir / files["damage_tif"]) if "damage_tif" in files else []
    return {
        "job_id": job_id, "bounds": _bounds_4326(output_dir / files[raster]),
        "columns": columns, "districts": features,
        "colour_by": field, "ramp": list(RAMP), "scale_max": vmax,
        "tiles": {layer: f"jobs/{job_id}/tiles/{layer}/{{z}}/{{x}}/{{y}}.png"
                  for layer in layers},
        "classes": legend,
        "buildings": {"href": f"jobs/{job_id}/buildings.geojson", "min_zoom": BUILDINGS_MIN_ZOOM,
                      "max_features": BUILDINGS_MAX} if "buildings_parquet" in files else None,
        "basemap_url": basemap_url,
        "grid": {"href": f"jobs/{job_id}/grid.png"},
    }


@functools.lru_cache(maxsize=4)
def _buildings_4326(path: str, mtime_ns: int) -> Any:
    import geopandas as gpd

    frame = gpd.read_parquet(path).to_crs("EPSG:4326")
    # damaged first, so that a capped answer keeps the buildings that matter
    return frame.sort_values("damaged", ascending=False, kind="stable") \
        if "damaged" in frame else frame


def buildings_geojson(path: Path, bbox: tuple[float, float, float, float]) -> dict[str, Any]:
    """Building footprints within `bbox` (lon/lat) as GeoJSON, at most `BUILDINGS_MAX`
    (damaged first); `truncated` says when more were there."""
    frame = _buildings_4326(str(path), path.stat().st_mtime_ns)
    positions = np.sort(frame.sindex.query(box(*bbox), predicate="intersects"))
    inside = frame.iloc[positions]  # in _buildings_4326's damaged-first order
    keep = [c for c in ("building_id", "damage_class", "damaged", "mean_score", "geometry")
            if c in inside]
    geojson: dict[str, Any] = json.loads(
        inside[keep].head(BUILDINGS_MAX).to_json(na="null", drop_id=True))
    geojson["truncated"] = len(inside) > BUILDINGS_MAX
    return geojson


def grid_png(output_dir: Path, files: dict[str, str], districts_max: float | None = None) -> bytes:
    """The damaged-fraction grid as a PNG on `RAMP` (one pixel a cell)."""
    from PIL import Image

    fraction, _, _ = _grid(output_dir / files["grid_tif"])
    vmax = districts_max if districts_max is not None else scale_max(fraction)
    buffer = io.BytesIO()
    Image.fromarray(ramp_rgba(fraction, vmax), mode="RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def add_page_routes(app: FastAPI) -> None:
    """Mount `/ui/` and the page's data routes on the service app."""
    require_read = app.state.require_read
    job_or_404 = app.state.job_or_404
    output_file = app.state.output_file

    @app.get("/ui", include_in_schema=False)
    def ui_redirect() -> Response:
        return Response(status_code=307, headers={"Location": "ui/"})

    @app.get("/ui/", include_in_schema=False)
    def ui_index() -> HTMLResponse:
        # the page asks for a token itself when reads need one
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    def _served(folder: Path, name: str, what: str) -> FileResponse:
        # only a file listed in `folder` itself, of a known type: no path ever leaves it
        path = folder / name
        if name not in {p.name for p in folder.iterdir()} or path.suffix not in _TYPES:
            from ruinmap.cluster.service.problems import RequestError

            raise RequestError(404, "Not found", f"no {what} '{name}'")
        return FileResponse(path, media_type=_TYPES[path.suffix])

    @app.get("/ui/{name}", include_in_schema=False)
    def ui_asset(name: str) -> FileResponse:
        return _served(STATIC, name, "page asset")

    @app.get("/ui/vendor/maplibre-gl/{name}", include_in_schema=False)
    def ui_vendor(name: str) -> FileResponse:
        return _served(VENDOR, name, "vendored file")

    def _ready(job_id: str) -> Any:
        from ruinmap.cluster.service.problems import OGC_EXC, RequestError

        record = job_or_404(job_id)
        if record.status != "successful":
            raise RequestError(404, "Result not ready", f"job {job_id} is {record.status}",
                               f"{OGC_EXC}result-not-ready")
        for name in ("grid_tif", "districts_parquet"):
            output_file(record, name)  # confined to the output root, and present
        return record

    @app.get("/jobs/{job_id}/map-data", summary="Districts and grid for the results page")
    def job_map_data(job_id: str, request: Request) -> dict[str, Any]:
        require_read(request)
        record = _ready(job_id)
        return map_data(record.output_dir, record.files, job_id,
                        app.state.config.basemap_url)

    def _finished_for_map(job_id: str) -> Any:
        from ruinmap.cluster.service.problems import OGC_EXC, RequestError

        record = job_or_404(job_id)
        if record.status in ("accepted", "running"):
            raise RequestError(409, "Result not ready", f"job {job_id} is {record.status}; "
                               "its map tiles exist once it is successful",
                               f"{OGC_EXC}result-not-ready")
        if record.status != "successful":
            raise RequestError(404 if record.status == "failed" else 410, "No results",
                               f"job {job_id} is {record.status}: it has no map tiles")
        return record

    @app.get("/jobs/{job_id}/tiles/{layer}/{z}/{x}/{y}.png",
             summary="A map tile (WebMercatorQuad, 256 px PNG) of the damage or score raster")
    def job_tile(job_id: str, layer: str, z: int, x: int, y: int, request: Request) -> Response:
        from ruinmap.cluster.service.problems import RequestError

        require_read(request)
        if layer not in LAYERS:
            raise RequestError(404, "No such layer", f"tile layer '{layer}': known layers are "
                               f"{', '.join(LAYERS)}")
        if not (0 <= z <= 24 and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
            raise RequestError(404, "No such tile", f"tile {z}/{x}/{y} is not in the "
                               "WebMercatorQuad matrix (z 0..24, x and y 0..2^z - 1)")
        record = _finished_for_map(job_id)
        path = output_file(record, f"{layer}_tif")  # confined to the output root
        try:
            png = render_tile(path, layer, z, x, y)
        except TileOutside as exc:
            raise RequestError(404, "Tile outside the raster", str(exc)) from None
        return Response(png, media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/jobs/{job_id}/buildings.geojson",
             summary="Building footprints in a bounding box (lon/lat), damaged first, capped")
    def job_buildings(job_id: str, request: Request, bbox: str) -> Response:
        from ruinmap.cluster.service.problems import RequestError

        require_read(request)
        record = _finished_for_map(job_id)  # an unknown job is 404 whatever the bbox
        try:
            box_ = tuple(float(v) for v in bbox.split(","))
        except ValueError:
            box_ = ()
        if len(box_) != 4 or not (box_[0] < box_[2] and box_[1] < box_[3]):
            raise RequestError(400, "Bad bbox", f"bbox={bbox!r}: give west,south,east,north "
                               "in degrees, west < east and south < north")
        path = output_file(record, "buildings_parquet")
        body = json.dumps(buildings_geojson(path, box_))
        return Response(body, media_type="application/geo+json")

    @app.get("/jobs/{job_id}/grid.png", summary="The damage grid as a coloured PNG")
    def job_grid_png(job_id: str, request: Request) -> Response:
        require_read(request)
        record = _ready(job_id)
        data = map_data(record.output_dir, record.files, job_id)
        png = grid_png(record.output_dir, record.files, data["scale_max"])
        return Response(png, media_type="image/png")
