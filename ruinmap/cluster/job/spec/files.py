"""Checking the files a job spec names, before any work starts.

`validate_spec_files(spec)` expands the imagery globs (local or s3://), reads the schema of the
district and building files (fields, CRS, geometry type, feature count) without loading them,
and checks the output folder, raising one SpecError that lists every problem with its key.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import rasterio

from ruinmap.cluster.geo.vectors import PARQUET_SUFFIXES
from ruinmap.cluster.ingest.plan import same_inputs
from ruinmap.cluster.ingest.stac import StacQuery
from ruinmap.cluster.job.spec.job import JobSpec
from ruinmap.cluster.job.spec.messages import join_problems
from ruinmap.cluster.methods.pwtt import PwttParams
from ruinmap.cluster.storage.confined import Roots, confined_raster_path, confined_vector_path
from ruinmap.cluster.storage.globs import expand_inputs
from ruinmap.cluster.storage.location import Location, ObjectURL, as_location
from ruinmap.errors import ConfinementError, SpecError

__all__ = ["SpecFiles", "VectorInfo", "validate_spec_files"]
_POLYGONAL = {"polygon", "multipolygon", "polygon z", "multipolygon z", "curvepolygon",
              "multisurface", "polygon25d", "multipolygon25d", "3d polygon", "3d multipolygon"}
_NON_POLYGONAL_WORDS = ("point", "linestring", "line")

@dataclass(frozen=True)
class VectorInfo:
    """What `validate_spec_files` learnt about a vector file from its schema."""

    path: Path
    fields: tuple[str, ...]
    crs: str
    n_features: int | None
    geometry_type: str | None


@dataclass(frozen=True)
class SpecFiles:
    """The files a validated spec names: expanded input lists and vector schemas."""

    pre: tuple[Location, ...]  # local files, or s3:// URLs
    post: tuple[Location, ...]
    store: Location | None
    districts: VectorInfo
    buildings: VectorInfo | None
    output_dir: Location
    # `[inputs.stac]` as a query, its bbox defaulting to the districts' extent (lon/lat)
    stac: StacQuery | None = None


def _expand(patterns: Sequence[str], key: str) -> tuple[tuple[Location, ...], list[str]]:
    """The files of `patterns` and a problem, naming `key[i]`, for each that matches none."""
    files, expansions = expand_inputs(patterns)
    problems = []
    for i, found in enumerate(expansions):
        where = f"{key}[{i}]: '{found.pattern}'"
        if found.reason is None:
            continue
        if found.reason.startswith("unlistable: "):
            reason = found.reason.removeprefix("unlistable: ")
            problems.append(f"{where} cannot be listed ({reason})")
        elif found.is_remote:
            problems.append(f"{where} matches no object")
        elif found.reason == "folder":
            problems.append(f"{where} is a folder; give a glob such as '{found.folder_hint()}'")
        elif found.reason == "no match":
            problems.append(f"{where} matches no file")
        else:
            problems.append(f"{where} does not exist")
    return files, problems


def _vector_info(path: Path, layer: str | None, confine_to: Roots | None) -> VectorInfo:
    """Schema of a vector file, reading no more than its header and first rows (opened
    confined to `confine_to`, `storage.confined`)."""
    with confined_vector_path(path, confine_to) as name:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            return replace(_parquet_info(Path(name)), path=path)
        import pyogrio

        info = pyogrio.read_info(name, layer=layer)
        # a first row proves the features themselves decode, not just the header
        pyogrio.read_dataframe(name, layer=layer, max_features=1)
    n_features = int(info["features"])
    return VectorInfo(
        path=path,
        fields=tuple(str(f) for f in info["fields"]),
        crs=str(info["crs"] or ""),
        n_features=None if n_features < 0 else n_features,
        geometry_type=info.get("geometry_type"),
    )


def _lonlat_extent(info: VectorInfo, layer: str | None,
                   confine_to: Roots | None) -> tuple[float, float, float, float]:
    """The districts' extent in degrees (EPSG:4326): the default area of a STAC search."""
    import geopandas as gpd
    from rasterio.warp import transform_bounds

    with confined_vector_path(info.path, confine_to) as name:
        if info.path.suffix.lower() in PARQUET_SUFFIXES:
            frame = gpd.read_parquet(name)
        else:
            frame = gpd.read_file(name, layer=layer)
    west, south, east, north = transform_bounds(info.crs, "EPSG:4326",
                                                *frame.total_bounds, densify_pts=21)
    return float(west), float(south), float(east), float(north)


def _parquet_info(path: Path) -> VectorInfo:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    geo_text = (schema.metadata or {}).get(b"geo")
    if geo_text is None:
        raise ValueError("a Parquet file without GeoParquet 'geo' metadata")
    geo = json.loads(geo_text)
    column = geo.get("primary_column", "geometry")
    column_meta = geo.get("columns", {}).get(column, {})
    # GeoParquet: an absent crs means OGC:CRS84, an explicit null means unknown
    crs_value = column_meta.get("crs", "OGC:CRS84")
    if isinstance(crs_value, Mapping):
        crs_id = crs_value.get("id") or {}
        crs = (f"{crs_id.get('authority')}:{crs_id.get('code')}" if crs_id
               else str(crs_value.get("name", "PROJJSON")))
    else:
        crs = str(crs_value or "")
    types_ = column_meta.get("geometry_types") or []
    return VectorInfo(
        path=path,
        fields=tuple(name for name in schema.names if name != column),
        crs=crs,
        n_features=parquet.metadata.num_rows,
        geometry_type=types_[0] if len(types_) == 1 else None,
    )


def _check_vector(
    path_text: str, layer: str | None, key: str, fields: Mapping[str, str], problems: list[str],
    crs: str | None = None, confine_to: Roots | None = None,
) -> VectorInfo | None:
    path = Path(path_text)
    if not path.exists():
        problems.append(f"{key}.path: '{path}' does not exist")
        return None
    if path.is_dir():
        problems.append(f"{key}.path: '{path}' is a folder; give the vector file itself")
        return None
    try:
        info = _vector_info(path, layer, confine_to)
    except ConfinementError as exc:
        problems.append(f"{key}.path: {exc}")
        return None
    except Exception as exc:  # GDAL and pyarrow raise many kinds; all mean "cannot read"
        problems.append(
            f"{key}.path: '{path}' is not a readable vector file ({exc}); use GeoJSON, "
            "GeoPackage, GeoParquet or a (zipped) Shapefile"
        )
        return None
    if crs is not None:  # `<key>.crs` overrides whatever the file says
        info = replace(info, crs=crs)
    if not info.crs:
        problems.append(
            f"{key}.path: '{path}' has no CRS; add one (e.g. a .prj beside a Shapefile, or "
            f"`ogr2ogr -a_srs EPSG:4326`), or give {key}.crs"
        )
    if info.n_features == 0:
        problems.append(f"{key}.path: '{path}' has no features")
    geometry = (info.geometry_type or "").lower()
    if geometry and geometry not in _POLYGONAL and any(w in geometry for w in _NON_POLYGONAL_WORDS):
        problems.append(f"{key}.path: '{path}' holds {info.geometry_type} geometries; "
                        "polygons are needed")
    for field_key, field in fields.items():
        if field not in info.fields:
            available = ", ".join(info.fields) or "(none)"
            problems.append(
                f"{key}.{field_key}: field '{field}' is not in '{path.name}'; "
                f"available fields: {available}"
            )
    return info


def _check_mask_raster(path_text: str, band: int, problems: list[str],
                       confine_to: Roots | None) -> None:
    """The mask raster must exist, open as a raster with a CRS and have `band`."""
    path = Path(path_text)
    if not path.is_file():
        problems.append(f"mask.source: '{path}' does not exist (give \"buildings\", \"none\" "
                        "or a raster file)")
        return
    try:
        with confined_raster_path(path, confine_to) as name, rasterio.open(name) as src:
            crs, count = src.crs, src.count
    except ConfinementError as exc:
        problems.append(f"mask.source: {exc}")
        return
    except rasterio.errors.RasterioIOError as exc:
        problems.append(f"mask.source: '{path}' is not a readable raster ({exc})")
        return
    if crs is None:
        problems.append(f"mask.source: '{path}' has no CRS; set one with "
                        "`gdal_edit.py -a_srs EPSG:...`")
    if band > count:
        problems.append(f"mask.band = {band}, but '{path}' has {count} band(s)")


def _check_output_dir(path: Path, problems: list[str]) -> None:
    if path.exists():
        if not path.is_dir():
            problems.append(f"output.dir: '{path}' exists and is not a folder")
        elif not os.access(path, os.W_OK | os.X_OK):
            problems.append(f"output.dir: '{path}' is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        problems.append(f"output.dir: cannot create '{path}': '{parent}' is not a folder")
    elif not os.access(parent, os.W_OK | os.X_OK):
        problems.append(f"output.dir: cannot create '{path}': '{parent}' is not writable")


def validate_spec_files(spec: JobSpec, confine_to: Roots | None = None) -> SpecFiles:
    """Check every file the spec names, before any work starts; raise SpecError listing problems.

    Globs must match files and name each image once (not the same file twice, under one
    name or two: a symlink, a hard link), a store must exist, district and building files
    must be readable vector files with a CRS (or `<key>.crs`) and polygons (only their schema
    and first row are read), the `id`
    (and `name`) fields must exist, pwtt `orbits` globs must match an input, and the output
    folder must be creatable, and `validation.labels` must exist (it is read after the run,
    once the results' grid and dates are known). Nothing is created or written.
    `confine_to`: the vector files are opened confined to these roots (`storage.confined`).
    """
    problems: list[str] = []
    pre: tuple[Location, ...] = ()
    post: tuple[Location, ...] = ()
    store: Location | None = None
    if spec.inputs.store is not None:
        store = as_location(spec.inputs.store)
        if not store.join("zarr.json").exists() and not (not store.is_remote and store.exists()):
            problems.append(
                f"inputs.store: '{store}' does not exist; run `ruinmap ingest` first or give "
                "inputs.pre and inputs.post"
            )
    elif spec.inputs.stac is None:
        assert spec.inputs.pre is not None and spec.inputs.post is not None  # model invariant
        pre, pre_problems = _expand(spec.inputs.pre, "inputs.pre")
        post, post_problems = _expand(spec.inputs.post, "inputs.post")
        problems += pre_problems + post_problems
        for side_a, first, side_b, second in same_inputs([("pre", pre), ("post", post)]):
            also = "" if str(first) == str(second) else f" (as '{first}', the same file)"
            problems.append(f"inputs.{side_b}: '{second}' is also in inputs.{side_a}{also}; "
                            "give each image once")

    district_fields = {"id": spec.districts.id}
    if spec.districts.name is not None:
        district_fields["name"] = spec.districts.name
    districts = _check_vector(
        spec.districts.path, spec.districts.layer, "districts", district_fields, problems,
        spec.districts.crs, confine_to,
    )
    buildings = None
    if spec.buildings is not None:
        building_fields = {"id": spec.buildings.id} if spec.buildings.id is not None else {}
        buildings = _check_vector(
            spec.buildings.path, spec.buildings.layer, "buildings", building_fields, problems,
            spec.buildings.crs, confine_to,
        )

    params = spec.method_params
    if isinstance(params, PwttParams) and params.orbits and (pre or post):
        for pattern in params.orbits:
            single = PwttParams.model_construct(orbits={pattern: 1})
            if not any(single.orbit_from_spec(f) is not None for f in pre + post):
                problems.append(
                    f"method_params.orbits: '{pattern}' matches none of the input files"
                )

    if spec.mask is not None and spec.mask.is_raster:
        _check_mask_raster(spec.mask.source, spec.mask.band, problems, confine_to)

    if spec.validation is not None:
        labels = spec.validation.labels
        if not (Path(labels).exists() or glob.glob(labels)):
            problems.append(f"validation.labels: '{labels}' does not exist (nor matches a file)")

    output_dir = as_location(spec.output.dir)
    if not isinstance(output_dir, ObjectURL):
        _check_output_dir(output_dir, problems)
    elif not output_dir.bucket_exists():
        problems.append(f"output.dir: the bucket of '{output_dir}' does not exist (or "
                        "these credentials cannot see it)")
    stac = None
    if spec.inputs.stac is not None and districts is not None and districts.crs:
        bbox = spec.inputs.stac.bbox
        if bbox is None:
            try:
                bbox = _lonlat_extent(districts, spec.districts.layer, confine_to)
            except Exception as exc:  # GDAL and pyarrow raise many kinds
                problems.append(f"districts.path: cannot read its extent for inputs.stac "
                                f"({exc}); give inputs.stac.bbox")
        stac = spec.inputs.stac.query_for(bbox)
    if problems:
        raise SpecError(join_problems(spec.source, problems))
    assert districts is not None  # a missing district file is a problem above
    return SpecFiles(
        stac=stac,
        pre=pre, post=post, store=store, districts=districts, buildings=buildings,
        output_dir=output_dir,
    )
