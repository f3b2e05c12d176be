"""STAC inputs: a STAC API search (pystac-client) or a static catalog, collection or
ItemCollection (pystac), resolved into the same acquisitions as plain files.

- Items: the search's `collections`, `bbox` (lon/lat; the job's default is the districts'
  extent) and `pre_datetime` / `post_datetime` intervals, with an API's optional `query` and
  `filter` (CQL2 JSON). A static catalog is filtered the same way here (collections, bbox,
  datetime); `query` and `filter` need an API.
- Assets: one per band, picked by key (`vv`, `B04`; exact, then case-insensitive), else by
  role. Each must be a raster (its media type, when given, a GeoTIFF/COG, JPEG 2000 or other
  image type) that GDAL opens: http(s):// through /vsicurl/, s3:// through /vsis3/, local
  paths as they are. Nodata and (scale, offset) come from the asset's `raster:bands`.
- Acquisitions: items of one side with the same calendar day, `sat:relative_orbit` and
  `sat:orbit_state` are one acquisition, a mosaic (`ingest.mosaic`, first valid pixel in the
  order of the items' `datetime`, then id), read shard by shard.
- An optional class mask asset (Sentinel-2 L2A's `SCL`): its `mask_classes` are nodata in
  every band of the item (read with nearest-neighbour resampling).
- Signed URLs: `sign` names a function `href -> signed href` (`planetary_computer`, the
  optional extra `ruinmap[planetary-computer]`, or `package.module:function`), called on
  every asset href before it is read. Credentials (AWS_*, GDAL_HTTP_*) come from the
  environment as GDAL and fsspec read them.

Every problem is an InputError naming the item (and asset): a search with zero items, an
asset missing or not a raster, an item outside the area, mixed pixel sizes in one date
without a target resolution, a URL that answers 403 (an expired signature).
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac
import rasterio
import shapely
from shapely.geometry import box, shape

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.ingest.dates import parse_date_text
from ruinmap.cluster.ingest.mosaic import Member
from ruinmap.cluster.ingest.options import IngestOptions
from ruinmap.cluster.ingest.plan import InputPlan, plan_grid
from ruinmap.cluster.ingest.sources import Acquisition, SourceFile, common_bands
from ruinmap.cluster.storage.s3 import gdal_options
from ruinmap.cluster.storage.store import SIDES
from ruinmap.errors import InputError, SpecError

__all__ = ["SCL_CLOUD_CLASSES", "AcquisitionSummary", "StacQuery", "StacSearch", "find_items",
           "load_signer", "plan_stac_inputs", "search_summary"]

#: Sentinel-2 L2A scene classification (SCL) classes that are nodata by default: 3 cloud
#: shadows, 8 cloud medium probability, 9 cloud high probability, 10 thin cirrus (ESA,
#: Sentinel-2 Level-2A Product Format Specification, S2-PDGS-MPC-L2A-PFS, table "Scene
#: Classification values"; 0 no data, 1 saturated or defective, 2 dark area pixels,
#: 4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 11 snow or ice)
SCL_CLOUD_CLASSES = (3, 8, 9, 10)

_RASTER_MEDIA = ("image/tiff", "image/jp2", "image/png", "image/jpeg", "application/x-hdf",
                 "application/x-netcdf", "application/vnd+zarr")
_SIGNERS = {"planetary_computer": "planetary_computer:sign",
            "planetary-computer": "planetary_computer:sign"}


@dataclass(frozen=True)
class StacQuery:
    """A STAC source: `source` is an API's URL (`is_api`) or a static catalog, collection or
    ItemCollection JSON (path, http(s):// or s3://); the rest as in the module docstring.
    bbox: (west, south, east, north) in degrees (EPSG:4326)."""

    source: str
    is_api: bool
    pre_datetime: str
    post_datetime: str
    collections: tuple[str, ...] = ()
    bbox: tuple[float, float, float, float] | None = None
    query: Mapping[str, Any] | None = None
    filter: Mapping[str, Any] | None = None
    assets: tuple[str, ...] = ("vv", "vh")
    mask: str | None = None
    mask_classes: tuple[int, ...] = SCL_CLOUD_CLASSES
    sign: str | None = None
    max_items: int = 10000


@dataclass
class StacSearch:
    """The items a query found, by side, in mosaic order (datetime, then id)."""

    query: StacQuery
    items: dict[str, list[pystac.Item]] = field(default_factory=dict)


def load_signer(name: str | None) -> Callable[[str], str] | None:
    """The URL signer `name` names: `planetary_computer` or `package.module:function`
    (`package.module.function` also works)."""
    if name is None:
        return None
    target = _SIGNERS.get(name, name)
    module_name, _, attr = target.partition(":") if ":" in target else target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        signer = getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        extra = (" (install the optional extra: pip install 'ruinmap[planetary-computer]')"
                 if target.startswith("planetary_computer") else "")
        raise SpecError(f"inputs.stac.sign = {name!r}: cannot load it ({exc}){extra}; give "
                        "'planetary_computer' or 'package.module:function'") from None
    if not callable(signer):
        raise SpecError(f"inputs.stac.sign = {name!r}: not a function")
    return signer


def _interval(text: str, what: str) -> tuple[np.datetime64, np.datetime64]:
    """A STAC datetime interval (`start/end`, either open as `..`, or one instant), as
    inclusive nanosecond bounds."""
    parts = text.split("/") if "/" in text else [text, text]
    if len(parts) != 2:
        raise SpecError(f"{what} {text!r}: give 'start/end' (ISO 8601, '..' for open)")
    bounds: list[np.datetime64] = []
    for i, part in enumerate(parts):
        part = part.strip()
        if part in ("", ".."):
            bounds.append(np.datetime64("1900-01-01T00:00:00", "ns") if i == 0
                          else np.datetime64("2200-01-01T00:00:00", "ns"))
            continue
        parsed = parse_date_text(part)
        if parsed is None:
            raise SpecError(f"{what} {text!r}: {part!r} is not a date (use YYYY-MM-DD or "
                            "YYYY-MM-DDTHH:MM:SSZ)")
        if len(part) <= 10 and i == 1:  # a bare end day includes the whole day
            parsed = parsed + np.timedelta64(1, "D") - np.timedelta64(1, "ns")
        bounds.append(parsed)
    start, end = bounds
    if end < start:
        raise SpecError(f"{what} {text!r}: the end is before the start")
    return start, end


def _item_time(item: pystac.Item) -> np.datetime64:
    stamp = item.datetime or item.common_metadata.start_datetime
    if stamp is None:
        raise InputError(f"STAC item {_name(item)}: no datetime (nor start_datetime)")
    return np.datetime64(stamp.replace(tzinfo=None).isoformat(), "ns")


def _name(item: pystac.Item) -> str:
    return f"{item.collection_id}/{item.id}" if item.collection_id else item.id


def _api_items(query: StacQuery, side: str, interval: str) -> list[pystac.Item]:
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    try:
        client = Client.open(query.source)
        search = client.search(
            collections=list(query.collections) or None,
            bbox=list(query.bbox) if query.bbox is not None else None,
            datetime=interval,
            query=dict(query.query) if query.query else None,
            filter=dict(query.filter) if query.filter else None,
            max_items=query.max_items,
        )
        return list(search.items())
    except (APIError, OSError, json.JSONDecodeError) as exc:
        raise InputError(f"inputs.stac.url {query.source}: the {side}-event search failed "
                         f"({exc}); check the URL, the collections and the query") from None


def _static_items(query: StacQuery) -> list[pystac.Item]:
    try:
        loaded = pystac.read_file(query.source)
    except Exception as exc:  # pystac raises many types for a file that is not STAC
        raise InputError(f"inputs.stac.catalog {query.source}: not a readable STAC catalog, "
                         f"collection or ItemCollection ({exc})") from None
    if isinstance(loaded, pystac.ItemCollection):
        return list(loaded.items)
    if isinstance(loaded, pystac.Item):
        return [loaded]
    if isinstance(loaded, pystac.Catalog):  # a Collection is a Catalog
        return list(loaded.get_items(recursive=True))
    raise InputError(f"inputs.stac.catalog {query.source}: a {type(loaded).__name__}, not a "
                     "catalog, collection or ItemCollection")


def _keep(item: pystac.Item, query: StacQuery, interval: tuple[np.datetime64, np.datetime64],
          area: shapely.Geometry | None) -> bool:
    if query.collections and item.collection_id not in query.collections:
        return False
    if not interval[0] <= _item_time(item) <= interval[1]:
        return False
    if area is not None and item.geometry is not None:
        return bool(shape(item.geometry).intersects(area))
    return True


def find_items(query: StacQuery) -> StacSearch:
    """The items of each side, ordered by datetime then id (the mosaic order).

    Raises InputError when a side has no item (naming the search), SpecError for a bad
    datetime interval or `query`/`filter` on a static catalog.
    """
    found = StacSearch(query)
    static: list[pystac.Item] | None = None
    if not query.is_api:
        if query.query or query.filter:
            raise SpecError("inputs.stac: query and filter need a STAC API (url); a static "
                            "catalog is filtered by collections, bbox and datetime only")
        static = _static_items(query)
    area = box(*query.bbox) if query.bbox is not None else None
    for side in SIDES:
        text = query.pre_datetime if side == "pre" else query.post_datetime
        interval = _interval(text, f"inputs.stac.{side}_datetime")
        if static is None:
            items = _api_items(query, side, text)
        else:
            items = [it for it in static if _keep(it, query, interval, area)]
        if not items:
            where = query.source
            raise InputError(
                f"inputs.stac: {where} has no {side}-event item for datetime {text!r}, "
                f"collections {list(query.collections) or 'any'}, bbox "
                f"{_full(query.bbox) if query.bbox else 'any'}; widen the dates or the box, or "
                "check the collection names"
            )
        found.items[side] = sorted(items, key=lambda it: (_item_time(it), it.id))
    return found


def _full(values: Sequence[float]) -> str:
    return "(" + ", ".join(repr(float(v)) for v in values) + ")"


def _orbit(item: pystac.Item) -> tuple[int | None, str | None]:
    props = item.properties
    orbit = props.get("sat:relative_orbit")
    state = props.get("sat:orbit_state")
    return (None if orbit is None else int(orbit)), (None if state is None else str(state))


def _day(item: pystac.Item) -> Any:
    return _item_time(item).astype("datetime64[D]").item()


def _asset(item: pystac.Item, name: str) -> tuple[str, pystac.Asset]:
    """The asset of band `name`: by key (exact, then case-insensitive), else by role."""
    if name in item.assets:
        return name, item.assets[name]
    for key, asset in item.assets.items():
        if key.lower() == name.lower():
            return key, asset
    for key, asset in item.assets.items():
        if name.lower() in (r.lower() for r in asset.roles or ()):
            return key, asset
    raise InputError(
        f"STAC item {_name(item)}: no asset {name!r} (by key or role); it has "
        f"{', '.join(sorted(item.assets))}; choose the bands with inputs.stac.assets"
    )


def _raster_band(asset: pystac.Asset) -> dict[str, Any]:
    bands = asset.extra_fields.get("raster:bands") or []
    return dict(bands[0]) if bands else {}


_HTTP_STATUS = re.compile(r"\b(?:HTTP response code: |HTTP error code: ?)(\d{3})\b")


def _open_problem(exc: Exception, item: str, key: str, href: str) -> InputError:
    text = str(exc)
    status = _HTTP_STATUS.search(text)
    shown = href.split("?", 1)[0]  # never print a signature's token
    if status and status.group(1) == "403":
        return InputError(
            f"STAC item {item}, asset {key!r} ({shown}): access refused (HTTP 403); a signed "
            "URL has expired or the credentials are missing: sign again (inputs.stac.sign) and "
            "re-run, or check AWS_* / GDAL_HTTP_* credentials"
        )
    if status and status.group(1) == "404":
        return InputError(f"STAC item {item}, asset {key!r} ({shown}): not found (HTTP 404)")
    return InputError(
        f"STAC item {item}, asset {key!r} ({shown}): not a readable raster ({text}); pick a "
        "raster asset with inputs.stac.assets"
    )


def _href(item: pystac.Item, asset: pystac.Asset) -> str:
    href = asset.get_absolute_href() or asset.href
    if href.startswith("file://"):
        href = href.removeprefix("file://")
    return href


def _inspect_asset(item: pystac.Item, key: str, asset: pystac.Asset,
                   signer: Callable[[str], str] | None, side: str) -> SourceFile:
    """The header of one asset, as a SourceFile (path: the unsigned href, for provenance;
    read_path: the href GDAL reads, signed)."""
    name = _name(item)
    media = (asset.media_type or "").split(";")[0].strip().lower()
    if media and not media.startswith(_RASTER_MEDIA):
        raise InputError(
            f"STAC item {name}, asset {key!r}: media type {asset.media_type!r} is not a "
            "raster; pick a raster asset with inputs.stac.assets"
        )
    href = _href(item, asset)
    readable = signer(href) if signer is not None else href
    band = _raster_band(asset)
    try:
        with rasterio.Env(**gdal_options()), rasterio.open(readable) as src:
            if src.crs is None or src.transform.is_identity:
                raise InputError(f"STAC item {name}, asset {key!r} ({href}): no CRS or "
                                 "geotransform; it cannot be put on a grid")
            grid = Grid.of(src.crs, src.transform, src.width, src.height)
            count, dtype = src.count, np.dtype(src.dtypes[0]).name
            nodata = src.nodata
            descriptions = tuple(d or None for d in src.descriptions)
    except rasterio.errors.RasterioIOError as exc:
        raise _open_problem(exc, name, key, readable) from None
    if band.get("nodata") is not None:
        nodata = band["nodata"]
    orbit, _ = _orbit(item)
    return SourceFile(
        path=href, side=side, grid=grid, count=count, dtype=dtype,
        nodata=None if nodata is None else _nodata_value(nodata), descriptions=descriptions,
        date=_item_time(item), date_source="stac:datetime", size_bytes=0, mtime_ns=0,
        orbit=orbit, item=name, read_path=None if readable == href else readable,
    )


def _nodata_value(value: Any) -> float:
    # raster:bands writes NaN and infinities as strings
    return float(value) if not isinstance(value, str) else float(value.lower())


def _scale(asset: pystac.Asset) -> tuple[float, float]:
    band = _raster_band(asset)
    scale, offset = float(band.get("scale", 1.0)), float(band.get("offset", 0.0))
    if not (math.isfinite(scale) and math.isfinite(offset)):
        raise InputError(f"raster:bands scale {scale!r} / offset {offset!r} are not finite")
    return scale, offset


def _member(item: pystac.Item, query: StacQuery, signer: Callable[[str], str] | None,
            side: str) -> Member:
    files, scales = [], []
    for name in query.assets:
        key, asset = _asset(item, name)
        files.append(_inspect_asset(item, key, asset, signer, side))
        scales.append(_scale(asset))
    mask = None
    if query.mask is not None:
        key, asset = _asset(item, query.mask)
        mask = _inspect_asset(item, key, asset, signer, side)
    return Member(tuple(files), _name(item), tuple(scales), mask, tuple(query.mask_classes))


def _band_names(query: StacQuery, member: Member) -> tuple[str, ...]:
    names: list[str] = []
    for name, f in zip(query.assets, member.files, strict=True):
        names += [name] if f.count == 1 else [f"{name}_{i + 1}" for i in range(f.count)]
    return tuple(names)


def _acquisitions(search: StacSearch, side: str,
                  signer: Callable[[str], str] | None) -> list[Acquisition]:
    query = search.query
    groups: dict[tuple[Any, ...], list[pystac.Item]] = {}
    for item in search.items[side]:
        groups.setdefault((_day(item), *_orbit(item)), []).append(item)
    acquisitions = []
    for items in groups.values():
        members = tuple(_member(it, query, signer, side) for it in items)
        acquisitions.append(Acquisition(
            side=side, files=tuple(f for m in members for f in m.files),
            date=min(_item_time(it) for it in items),
            band_names=_band_names(query, members[0]), members=members,
        ))
    return sorted(acquisitions, key=lambda a: a.date)  # type: ignore[arg-type, return-value]


def plan_stac_inputs(query: StacQuery, options: IngestOptions) -> InputPlan:
    """An ingest's `InputPlan` from a STAC query: items found (`find_items`), one asset
    header read per band and item, acquisitions by day and orbit, and the grid: the first
    pre-event asset's CRS and pixel grid over `options.bbox`, else over the query's bbox
    (lon/lat), else over the common footprint."""
    search = find_items(query)
    signer = load_signer(query.sign)
    acquisitions = {side: _acquisitions(search, side, signer) for side in SIDES}
    every = acquisitions["pre"] + acquisitions["post"]
    bands = common_bands(every, options.bands)
    if options.bbox is None and query.bbox is not None:
        from dataclasses import replace

        options = replace(options, bbox=query.bbox, bbox_crs="EPSG:4326")
    reference = acquisitions["pre"][0].files[0].grid
    return InputPlan(acquisitions, bands, plan_grid(reference, every, options))


@dataclass(frozen=True)
class AcquisitionSummary:
    """One acquisition a search would make: side, day, orbit, its items and how much of the
    area (the query's bbox) their footprints cover (0..1, None without a bbox)."""

    side: str
    day: str
    orbit: int | None
    orbit_state: str | None
    items: tuple[str, ...]
    coverage: float | None


def search_summary(query: StacQuery) -> list[AcquisitionSummary]:
    """What an ingest of `query` would use, from the items' metadata alone (no pixel, no
    asset header read): per side, date and orbit, the items and the area they cover."""
    search = find_items(query)
    area = box(*query.bbox) if query.bbox is not None else None
    rows = []
    for side in SIDES:
        groups: dict[tuple[Any, ...], list[pystac.Item]] = {}
        for item in search.items[side]:
            groups.setdefault((_day(item), *_orbit(item)), []).append(item)
        for (day, orbit, state), items in groups.items():
            coverage = None
            if area is not None and area.area > 0:
                shapes = [shape(it.geometry) for it in items if it.geometry is not None]
                union = shapely.union_all(shapes) if shapes else shapely.Polygon()
                coverage = float(union.intersection(area).area / area.area)
            rows.append(AcquisitionSummary(side, str(day), orbit, state,
                                           tuple(_name(it) for it in items), coverage))
    return rows
