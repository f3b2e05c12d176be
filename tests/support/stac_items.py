"""STAC items made with pystac from real GeoTIFFs: the footprint (bbox and geometry, lon/lat)
read from the first asset's header, assets with their media type and `raster:bands`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from shapely.geometry import box, mapping

from tests.support.rasters import write_geotiff
from tests.support.stac_api import make_app, serve

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
S2 = "sentinel-2-l2a"
# Sentinel-2 L2A since processing baseline 04.00: reflectance = DN / 10000 - 0.1
L2A_BAND = {"nodata": 0, "scale": 0.0001, "offset": -0.1}


@dataclass(frozen=True)
class AssetFile:
    """One asset: the file it describes, the href written (default the file's path)."""

    path: Path
    href: str | None = None
    media_type: str | None = COG
    roles: Sequence[str] = ("data",)
    raster_band: Mapping[str, Any] = field(default_factory=dict)


def make_item(item_id: str, when: str, assets: Mapping[str, AssetFile], *,
              collection: str | None = None,
              properties: Mapping[str, Any] | None = None) -> pystac.Item:
    """A STAC item over the first asset's footprint, dated `when` (ISO, UTC)."""
    first = next(iter(assets.values()))
    with rasterio.open(first.path) as src:
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    stamp = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    item = pystac.Item(item_id, mapping(box(west, south, east, north)),
                       [west, south, east, north], stamp, dict(properties or {}),
                       collection=collection)
    for key, asset in assets.items():
        extra = {"raster:bands": [dict(asset.raster_band)]} if asset.raster_band else {}
        item.add_asset(key, pystac.Asset(asset.href or str(asset.path),
                                         media_type=asset.media_type, roles=list(asset.roles),
                                         extra_fields=extra))
    return item


def write_catalog(folder: Path, items: Sequence[pystac.Item], *,
                  collection_id: str = "test-collection") -> Path:
    """A self-contained static catalog (catalog.json -> collection -> items) under `folder`;
    returns the catalog's path. Asset hrefs stay as given (absolute paths or URLs)."""
    catalog = pystac.Catalog("ruinmap-test", "static catalog for ruinmap's tests")
    extent = pystac.Extent(
        pystac.SpatialExtent([list(items[0].bbox or [])]),
        pystac.TemporalExtent([[min(i.datetime for i in items if i.datetime),
                                max(i.datetime for i in items if i.datetime)]]),
    )
    collection = pystac.Collection(collection_id, "test items", extent)
    for item in items:
        collection.add_item(item)
    catalog.add_child(collection)
    catalog.normalize_hrefs(str(folder))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    return folder / "catalog.json"


def _half_res(path: Path, out: Path, data: np.ndarray | None = None,
              nodata: float | None = 0) -> Path:
    """A 20 m raster over the footprint of the 10 m band `path` (B11 or SCL)."""
    with rasterio.open(path) as src:
        h, w = (src.height + 1) // 2, (src.width + 1) // 2
        if data is None:
            data = src.read(1, out_shape=(h, w), resampling=Resampling.average)
        transform = src.transform * src.transform.scale(2, 2)
        return write_geotiff(out, data.astype(np.uint16 if data.dtype != np.uint8 else np.uint8),
                             crs=src.crs.to_string(), transform=transform, nodata=nodata)


def _scl(shape: tuple[int, int], cloudy: bool) -> np.ndarray:
    scl = np.full(shape, 4, np.uint8)  # vegetation
    scl[:, shape[1] // 2:] = 5  # not vegetated
    if cloudy:
        scl[10:40, 10:50] = 9  # cloud high probability
        scl[60:70, :] = 3  # cloud shadows
        scl[80:90, 20:40] = 10  # thin cirrus
        scl[0:5, 0:5] = 0  # no data
    return scl


@contextmanager
def s2_api_server(bercy: Path, root: Path) -> Iterator[dict[str, Any]]:
    """A STAC API (tests/support/stac_api.py) with one Sentinel-2 L2A-shaped item per date
    over OSCD Bercy: B04 and B08 the real bands, B11 (their 20 m average) and SCL (20 m, the
    pre date with cloud, shadow, cirrus and no-data patches) made here; assets served under
    `root` at /assets/ (and /signed/). Yields url, root, files (side -> band -> path) and
    items (the served list: tests may add items and must remove them)."""
    items: list[dict[str, Any]] = []
    app = make_app(items, root)
    with serve(app) as url:
        made = {}
        for side, folder, when, cloudy in (
                ("pre", "imgs_1", "2016-11-30T10:50:00Z", True),
                ("post", "imgs_2", "2017-08-29T10:50:19Z", False)):
            files = {b: next((bercy / folder).glob(f"*_{b}.tif")) for b in ("B04", "B08")}
            rel = {}
            for band, path in files.items():
                target = root / side / f"{band}.tif"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())
                rel[band] = target
            rel["B11"] = _half_res(files["B08"], root / side / "B11.tif")
            with rasterio.open(rel["B11"]) as src:
                scl = _scl((src.height, src.width), cloudy)
            rel["SCL"] = _half_res(files["B08"], root / side / "SCL.tif", scl)
            assets = {
                band: AssetFile(path, href=f"{url}/assets/{side}/{path.name}",
                                raster_band=L2A_BAND if band != "SCL" else {"nodata": 0})
                for band, path in rel.items()
            }
            item = make_item(f"S2_{side}", when, assets, collection=S2,
                             properties={"eo:cloud_cover": 30 if cloudy else 1,
                                         "sat:relative_orbit": 51})
            items.append(item.to_dict())
            made[side] = rel
        yield {"url": url, "root": root, "files": made, "items": items, "app": app}
