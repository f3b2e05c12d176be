"""The results as a STAC catalog: `stac/collection.json` and one Item per product set
(`stac/<item>/<item>.json`), self-contained (every href relative), written with pystac.

The Item carries:
- its footprint (`geometry`, `bbox`) in EPSG:4326, the grid's own CRS and bounds with the
  projection extension (`proj:code`, `proj:shape`, `proj:transform`, `proj:bbox`; the damage
  grid's coarser shape and transform on its own asset);
- `raster:bands` (nodata, data type, scale) on the GeoTIFF assets (raster extension);
- `file:checksum` (multihash: sha2-256, `1220` + hex digest) and `file:size` on every asset
  (file extension), so a copy can be checked against the catalog;
- the method and its parameters (`ruinmap:method`, `ruinmap:parameters`), the input files with
  their checksums and dates (`ruinmap:inputs`), and the imagery dates: `ruinmap:pre_start`,
  `ruinmap:pre_end`, `ruinmap:post_start`, `ruinmap:post_end`, with the Item's
  `start_datetime` / `end_datetime` spanning both sides.

`validate_catalog` validates the written catalog with pystac's validator, offline: the core
STAC schemas ship with pystac, and the three extension schemas are bundled in
`stac_schemas/` (copied from github.com/stac-extensions at the tags pystac writes, Apache-2.0),
so pystac never fetches a schema from the internet.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pystac
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
from pystac.validation import JsonSchemaSTACValidator

from ruinmap.cluster.storage.durable import atomic_path
from ruinmap.errors import InputError

__all__ = ["STAC_DIR", "StacAsset", "StacBand", "StacRecord", "file_checksum",
           "refresh_file_checksums",
           "validate_catalog", "write_stac"]

STAC_DIR = "stac"
COLLECTION_JSON = "collection.json"
_SCHEMAS = Path(__file__).with_name("stac_schemas")
_SCHEMA_FILES = {
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json":
        "projection-v2.0.0.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json": "raster-v1.1.0.json",
    "https://stac-extensions.github.io/file/v2.1.0/schema.json": "file-v2.1.0.json",
}


@dataclass(frozen=True)
class StacBand:
    """One band of a GeoTIFF asset (raster extension)."""

    data_type: str  # a raster-extension data type: "float32", "uint8"
    nodata: float | int | None
    scale: float = 1.0


@dataclass(frozen=True)
class StacAsset:
    """One file of the product set; `shape`/`transform` when its grid is not the Item's."""

    path: Path
    media_type: str
    title: str
    roles: tuple[str, ...] = ("data",)
    bands: tuple[StacBand, ...] = ()
    shape: tuple[int, int] | None = None
    transform: Affine | None = None


@dataclass(frozen=True)
class StacRecord:
    """What the catalog says about one product set."""

    collection_id: str
    item_id: str
    title: str
    description: str
    crs_wkt: str
    shape: tuple[int, int]  # (height, width) of the pixel grid
    transform: Affine
    method: str
    parameters: Mapping[str, Any]
    inputs: Sequence[Mapping[str, Any]]
    pre_dates: Sequence[datetime] = ()
    post_dates: Sequence[datetime] = ()
    created: datetime = field(default_factory=lambda: datetime.now(UTC))


def file_checksum(path: Path) -> str:
    """The file's sha2-256 as a multihash in hex (`1220` + digest), as `file:checksum` wants."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "1220" + digest.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "ruinmap"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bounds(shape: tuple[int, int], transform: Affine) -> tuple[float, float, float, float]:
    height, width = shape
    xs = [transform.c, transform.c + transform.a * width]
    ys = [transform.f, transform.f + transform.e * height]
    return min(xs), min(ys), max(xs), max(ys)


def _footprint_wgs84(crs: CRS, bounds: tuple[float, float, float, float]) -> shapely.Polygon:
    box = shapely.box(*bounds)
    # 8 points a side: a UTM square's edges are (slight) curves in lon/lat
    side = max(bounds[2] - bounds[0], bounds[3] - bounds[1]) / 8 or 1.0
    dense = shapely.segmentize(box, side)
    to_wgs84 = Transformer.from_crs(crs, 4326, always_xy=True)
    x, y = to_wgs84.transform(*dense.exterior.coords.xy)
    return shapely.Polygon(zip(x, y, strict=True))


def _projection(ext: ProjectionExtension[Any], crs: CRS, shape: tuple[int, int],
                transform: Affine) -> None:
    epsg = crs.to_epsg()
    ext.code = f"EPSG:{epsg}" if epsg is not None else None
    if epsg is None:
        ext.wkt2 = crs.to_wkt()
    ext.shape = list(shape)
    ext.transform = list(transform)[:6]
    ext.bbox = list(_bounds(shape, transform))


def _band(band: StacBand) -> RasterBand:
    nodata: float | NoDataStrings | None = band.nodata
    if isinstance(band.nodata, float) and band.nodata != band.nodata:
        nodata = NoDataStrings.NAN
    return RasterBand.create(nodata=nodata, data_type=DataType(band.data_type),
                             scale=band.scale, offset=0.0)


def _dates(record: StacRecord) -> dict[str, Any]:
    props: dict[str, Any] = {}
    every = []
    for side, dates in (("pre", record.pre_dates), ("post", record.post_dates)):
        known = sorted(_utc(d) for d in dates)
        if known:
            props[f"ruinmap:{side}_start"] = known[0].isoformat()
            props[f"ruinmap:{side}_end"] = known[-1].isoformat()
            every += known
    return {"dates": props, "span": (min(every), max(every)) if every else None}


def _item(record: StacRecord, assets: Sequence[StacAsset], crs: CRS) -> pystac.Item:
    footprint = _footprint_wgs84(crs, _bounds(record.shape, record.transform))
    dates = _dates(record)
    span = dates["span"]
    properties = {
        "title": record.title,
        "created": _utc(record.created).isoformat(),
        "ruinmap:method": record.method,
        "ruinmap:parameters": dict(record.parameters),
        "ruinmap:inputs": [dict(i) for i in record.inputs],
        **dates["dates"],
    }
    # undated imagery: the Item still needs a datetime, and the run's time is the one known
    item = pystac.Item(
        id=record.item_id, geometry=shapely.geometry.mapping(footprint),
        bbox=list(footprint.bounds), properties=properties,
        datetime=None if span else _utc(record.created),
        start_datetime=span[0] if span else None, end_datetime=span[1] if span else None,
    )
    _projection(ProjectionExtension.ext(item, add_if_missing=True), crs, record.shape,
                record.transform)
    RasterExtension.add_to(item)
    FileExtension.add_to(item)
    for asset_file in assets:
        asset = pystac.Asset(href=str(asset_file.path.resolve()), title=asset_file.title,
                             media_type=asset_file.media_type, roles=list(asset_file.roles))
        item.add_asset(asset_file.path.name.replace(".", "_"), asset)
        files = FileExtension.ext(asset)
        files.checksum = file_checksum(asset_file.path)
        files.size = asset_file.path.stat().st_size
        if asset_file.bands:
            RasterExtension.ext(asset).apply([_band(b) for b in asset_file.bands])
        if asset_file.shape is not None and asset_file.transform is not None:
            _projection(ProjectionExtension.ext(asset), crs, asset_file.shape,
                        asset_file.transform)
    return item


def write_stac(out_dir: Path, record: StacRecord, assets: Sequence[StacAsset]) -> list[Path]:
    """Write `out_dir/stac/` (a self-contained Collection with one Item, module doc); returns
    the files written (collection first). Every asset file must exist in `out_dir`."""
    missing = [str(a.path) for a in assets if not a.path.is_file()]
    if missing:
        raise InputError(f"STAC catalog: asset file(s) {missing} do not exist; write the "
                         "products before their catalog")
    crs = CRS.from_wkt(record.crs_wkt)
    item = _item(record, assets, crs)
    footprint_bbox = item.bbox or []
    collection = pystac.Collection(
        id=_slug(record.collection_id), title=record.title, description=record.description,
        extent=pystac.Extent(
            pystac.SpatialExtent([list(footprint_bbox)]),
            pystac.TemporalExtent([[item.common_metadata.start_datetime or item.datetime,
                                    item.common_metadata.end_datetime or item.datetime]])),
        license="other",
    )
    collection.add_item(item)
    stac_dir = out_dir / STAC_DIR
    # the folder is written whole (temp folder, renamed): a sibling of stac/, so the relative
    # asset hrefs (../../score.tif) are the same in the temporary and in the final folder
    with atomic_path(stac_dir) as tmp:
        collection.normalize_hrefs(str(Path(tmp).resolve()) + "/")  # a folder, despite the dot
        collection.make_all_asset_hrefs_relative()
        collection.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    item_json = Path(item.get_self_href() or "")
    return [stac_dir / COLLECTION_JSON, stac_dir / item_json.parent.name / item_json.name]


def refresh_file_checksums(out_dir: Path) -> list[str]:
    """Re-read `file:checksum` and `file:size` of every local asset of `out_dir/stac/`'s
    Items from the files as they are now (after `ruinmap validate` rewrote the district
    tables, say); returns the asset keys that changed. No catalog: nothing to do."""
    changed: list[str] = []
    for item_json in sorted((out_dir / STAC_DIR).glob("*/*.json")):
        item = json.loads(item_json.read_text(encoding="utf-8"))
        for key, asset in item.get("assets", {}).items():
            path = (item_json.parent / asset["href"]).resolve()
            if not path.is_file() or "file:checksum" not in asset:
                continue
            checksum, size = file_checksum(path), path.stat().st_size
            if (asset["file:checksum"], asset.get("file:size")) != (checksum, size):
                asset["file:checksum"], asset["file:size"] = checksum, size
                changed.append(key)
        if changed:
            with atomic_path(item_json) as tmp:
                Path(tmp).write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
    return changed


def offline_validator() -> JsonSchemaSTACValidator:
    """pystac's JSON-schema validator with the extension schemas read from `stac_schemas/`."""
    validator = JsonSchemaSTACValidator()
    for uri, name in _SCHEMA_FILES.items():
        schema = json.loads((_SCHEMAS / name).read_text(encoding="utf-8"))
        validator.schema_cache[uri] = schema
        validator.schema_cache[uri + "#"] = schema
    return validator


def validate_catalog(collection_json: Path) -> list[str]:
    """Validate a written catalog (collection and items) offline with pystac; returns the
    schema URIs each object was checked against. Raises pystac's STACValidationError."""
    pystac.validation.set_validator(offline_validator())
    collection = pystac.Collection.from_file(str(collection_json))
    checked: list[str] = []
    for obj in (collection, *collection.get_items(recursive=True)):
        checked += obj.validate()
    return checked
