"""The results page: `/ui/` lists jobs; a finished job shows its district table and a map.

Fully offline: the HTML, script and style sheet are files of this package served by the
service itself (`static/`), and the map is plain SVG drawn by that script from two routes:

- `GET /jobs/{jobId}/map-data`: the districts (GeoJSON in the raster's CRS, so they line up
  with the grid without a projection library in the browser) with their table columns, the
  grid's bounds and the colour ramp;
- `GET /jobs/{jobId}/grid.png`: the damage grid (damaged fraction per cell) coloured with the
  same ramp, transparent where there is no data.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

__all__ = ["RAMP", "add_page_routes", "ramp_rgba"]

STATIC = Path(__file__).with_name("static")
#: Colour ramp of the damaged fraction, 0 -> scale maximum (yellow to dark red).
RAMP = ("#ffffb2", "#fed976", "#feb24c", "#fd8d3c", "#f03b20", "#bd0026")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def scale_max(values: np.ndarray) -> float:
    """The ramp's upper end: the 99th percentile of the finite values, rounded up to a
    'nice' step, at least 0.05 (so a nearly undamaged city is not painted dark red)."""
    finite = values[np.isfinite(values)]
    top = float(np.percentile(finite, 99)) if finite.size else 0.0
    for step in (0.05, 0.1, 0.2, 0.25, 0.5, 1.0):
        if top <= step:
            return step
    return math.ceil(top)


def ramp_rgba(values: np.ndarray, vmax: float, alpha: int = 255) -> np.ndarray:
    """RGBA (uint8) of `values` on `RAMP` from 0 to `vmax`; NaN fully transparent."""
    stops = np.array([_rgb(c) for c in RAMP], dtype=np.float64)
    position = np.clip(np.nan_to_num(values, nan=0.0) / vmax, 0, 1) * (len(RAMP) - 1)
    out = np.zeros((*values.shape, 4), np.uint8)
    for channel in range(3):
        out[..., channel] = np.interp(position, np.arange(len(RAMP)), stops[:, channel])
    out[..., 3] = np.where(np.isfinite(values), alpha, 0)
    return out


def _grid(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float], str]:
    import rasterio

    with rasterio.open(path) as src:
        fraction = src.read(1).astype(np.float64)
        bounds = (src.bounds.left, src.bounds.bottom, src.bounds.right, src.bounds.top)
        crs = src.crs.to_wkt() if src.crs else ""
    return fraction, bounds, crs


def map_data(output_dir: Path, files: dict[str, str], job_id: str) -> dict[str, Any]:
    """What the page's map and table need (see the module docstring)."""
    import geopandas as gpd

    fraction, bounds, crs = _grid(output_dir / files["grid_tif"])
    districts = gpd.read_parquet(output_dir / files["districts_parquet"])
    if crs:
        districts = districts.to_crs(crs)
    values = districts["damaged_fraction"].to_numpy(dtype=np.float64) \
        if "damaged_fraction" in districts else np.array([])
    vmax = scale_max(np.concatenate([values, fraction.ravel()]))
    features = json.loads(districts.to_json(na="null", drop_id=True))
    columns = [c for c in districts.columns if c != districts.geometry.name]
    return {
        "job_id": job_id, "bounds": list(bounds), "columns": columns, "districts": features,
        "grid": {"href": f"jobs/{job_id}/grid.png", "bounds": list(bounds)},
        "ramp": list(RAMP), "scale_max": vmax,
    }


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

    @app.get("/ui/{name}", include_in_schema=False)
    def ui_asset(name: str) -> FileResponse:
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()} or path.suffix not in _TYPES:
            from ruinmap.cluster.service.problems import RequestError

            raise RequestError(404, "Not found", f"no page asset '{name}'")
        return FileResponse(path, media_type=_TYPES[path.suffix])

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
        return map_data(record.output_dir, record.files, job_id)

    @app.get("/jobs/{job_id}/grid.png", summary="The damage grid as a coloured PNG")
    def job_grid_png(job_id: str, request: Request) -> Response:
        require_read(request)
        record = _ready(job_id)
        data = map_data(record.output_dir, record.files, job_id)
        png = grid_png(record.output_dir, record.files, data["scale_max"])
        return Response(png, media_type="image/png")
