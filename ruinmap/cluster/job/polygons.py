"""The job's polygons: districts and building footprints read once on the client, put on the
raster's CRS, and cut into what each tile needs (`TileVectors`, sent with the tile's task).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from ruinmap.cluster.geo.grid import Grid
from ruinmap.cluster.geo.rasterize import overlap_layers
from ruinmap.cluster.geo.vectors import (
    equal_area_km2,
    points_in_polygons,
    read_vector,
    to_raster_crs,
)
from ruinmap.cluster.job.polygon_checks import (
    check_districts_polygonal,
    check_lonlat_range,
    repair_polygons,
    with_spec_crs,
)
from ruinmap.cluster.job.spec import JobSpec
from ruinmap.cluster.job.spec.files import SpecFiles
from ruinmap.cluster.job.tiles import Tile
from ruinmap.cluster.storage.confined import Roots, confined_vector_path
from ruinmap.errors import SpecError

__all__ = ["Polygons", "TileVectors", "districts_of_centroids", "first_district",
           "polygons_on_grid", "read_polygons", "tile_vectors"]


@dataclass
class Polygons:
    """The polygons of a job in the raster's CRS, read once on the client."""

    district_ids: np.ndarray
    district_names: np.ndarray
    district_geoms: np.ndarray
    district_frame: gpd.GeoDataFrame  # as read (original CRS and attributes)
    district_area_km2: np.ndarray
    # layer of each district (`geo.rasterize.overlap_layers`): overlapping districts are
    # rasterized in different layers, so each counts every pixel it holds
    district_layer: np.ndarray
    building_frame: gpd.GeoDataFrame | None = None
    building_geoms: np.ndarray | None = None  # raster CRS; None where not scored
    building_scored: np.ndarray | None = None
    building_district: np.ndarray | None = None  # the first district holding the centroid
    # every (footprint, district) pair whose district holds the footprint's centroid: with
    # overlapping districts a footprint counts in each of them
    building_pairs: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class TileVectors:
    """The polygons one tile needs, already in the raster CRS (WKB, picklable and small).

    Districts: every district intersecting the tile with its 1-based label and its layer
    (`Polygons.district_layer`: one label image per layer). Buildings: the
    footprints intersecting the tile (global 0-based indices) plus those whose centroid pixel
    lies in it (`centroid_index`, `centroid_rc`: (row, col) in the tile). `mask_wkb`: every
    footprint (scored or not) within the mask margin of the tile (its halo plus the mask's
    buffer), for the built-up mask over its padded window (`builtup.window_mask`).
    """

    district_wkb: np.ndarray
    district_label: np.ndarray
    district_layer: np.ndarray
    building_wkb: np.ndarray
    building_index: np.ndarray
    centroid_index: np.ndarray
    centroid_rc: np.ndarray
    mask_wkb: np.ndarray = field(default_factory=lambda: np.empty(0, object))


def _read_confined(path: Path, layer: str | None, confine_to: Roots | None) -> gpd.GeoDataFrame:
    with confined_vector_path(path, confine_to) as name:
        return read_vector(name, layer)


def read_polygons(spec: JobSpec, files: SpecFiles, confine_to: Roots | None = None
                  ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]:
    """Read the district (and building) files and check them (`polygon_checks`: the spec's
    CRS override, lon/lat ranges, non-polygons, invalid polygons repaired with a note);
    SpecError when district ids repeat or miss. `confine_to`: the files are opened confined
    to these roots (`storage.confined`; ConfinementError outside them)."""
    path = files.districts.path
    frame = with_spec_crs(_read_confined(path, spec.districts.layer, confine_to),
                          spec.districts.crs)
    check_lonlat_range(frame, "districts", path)
    ids = frame[spec.districts.id]
    if ids.isna().any() or ids.duplicated().any():
        dupes = ids[ids.duplicated()].astype(str).unique()[:5].tolist()
        raise SpecError(
            f"districts.id: field '{spec.districts.id}' of '{files.districts.path.name}' must be "
            f"unique and present for every district (repeated or missing: {dupes or 'missing'})"
        )
    check_districts_polygonal(frame, spec.districts.id, path)
    frame = repair_polygons(frame, "districts", spec.districts.id, path)
    buildings = None
    if spec.buildings is not None and files.buildings is not None:
        b_path = files.buildings.path
        buildings = with_spec_crs(_read_confined(b_path, spec.buildings.layer, confine_to),
                                  spec.buildings.crs)
        check_lonlat_range(buildings, "buildings", b_path)
        buildings = repair_polygons(buildings, "buildings", spec.buildings.id, b_path)
    return frame, buildings


def polygons_on_grid(
    spec: JobSpec, frames: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None], grid: Grid
) -> Polygons:
    """The polygons of `frames` (from `read_polygons`) in the raster CRS, with areas."""
    frame, buildings = frames
    ids = frame[spec.districts.id]
    names = frame[spec.districts.name] if spec.districts.name else ids
    raster = to_raster_crs(frame, grid.crs_wkt, "districts")
    geoms = shapely.make_valid(raster.geometry.to_numpy())
    polygons = Polygons(
        district_ids=ids.to_numpy(), district_names=names.astype(str).to_numpy(),
        district_geoms=geoms, district_frame=frame, district_area_km2=equal_area_km2(frame),
        district_layer=overlap_layers(geoms),
    )  # fmt: skip
    if buildings is not None:
        raster_b = to_raster_crs(buildings, grid.crs_wkt, "buildings")
        area_m2 = equal_area_km2(buildings) * 1e6
        geoms = shapely.make_valid(raster_b.geometry.to_numpy())
        scored = (area_m2 >= spec.method_params.min_building_m2) & ~shapely.is_empty(geoms)
        polygons.building_frame = buildings
        polygons.building_geoms = geoms
        polygons.building_scored = scored
        polygons.building_pairs = districts_of_centroids(geoms, polygons.district_geoms)
        polygons.building_district = first_district(polygons.building_pairs, len(geoms))
    return polygons


def first_district(pairs: tuple[np.ndarray, np.ndarray], n_buildings: int) -> np.ndarray:
    """0-based district holding each footprint's centroid (the lowest index, if several), from
    `districts_of_centroids`' pairs; -1: none."""
    which, district = pairs
    out = np.full(n_buildings, -1, np.int64)
    # the pairs are sorted by district: assigned in reverse, the lowest district is written last
    out[which[::-1]] = district[::-1]
    return out


def districts_of_centroids(buildings: np.ndarray, districts: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(footprint, district) 0-based index pairs, one for every district holding a footprint's
    centroid (several where districts overlap), sorted by district then footprint."""
    return points_in_polygons(shapely.centroid(buildings), districts)


def tile_vectors(tiles: list[Tile], grid: Grid, polygons: Polygons,
                 mask_margin: float | None = None) -> list[TileVectors]:
    """The polygons each tile needs (spatial-index queries; every footprint goes where it
    overlaps, plus to the tile holding its centroid pixel). `mask_margin`: with a footprint
    mask, the distance (CRS units) around a tile within which its footprints shape the mask
    over its padded window (the halo plus the buffer); None: no footprint mask."""
    bounds = np.array([tile.grid(grid).bounds for tile in tiles])
    boxes = shapely.box(*bounds.T)
    d_tile, d_idx = shapely.STRtree(polygons.district_geoms).query(boxes, predicate="intersects")
    b_tile = b_idx = np.empty(0, np.int64)
    crow = ccol = np.empty(0, np.int64)
    scored_idx = np.empty(0, np.int64)
    if polygons.building_geoms is not None and polygons.building_scored is not None:
        scored_idx = np.flatnonzero(polygons.building_scored)
        geoms = polygons.building_geoms[scored_idx]
        b_tile, local = shapely.STRtree(geoms).query(boxes, predicate="intersects")
        b_idx = scored_idx[local]
        centre = shapely.centroid(geoms)
        crow, ccol = grid.pixel_of(shapely.get_x(centre), shapely.get_y(centre))
    mask_idx = [np.empty(0, np.int64)] * len(tiles)
    if mask_margin is not None and polygons.building_geoms is not None:
        geoms = polygons.building_geoms
        near = shapely.box(*(bounds + np.array([-1, -1, 1, 1]) * mask_margin).T)
        m_tile, m_idx = shapely.STRtree(geoms).query(near, predicate="intersects")
        mask_idx = [np.sort(m_idx[m_tile == k]) for k in range(len(tiles))]
    d_wkb = shapely.to_wkb(polygons.district_geoms)
    b_wkb = (shapely.to_wkb(polygons.building_geoms) if polygons.building_geoms is not None
             else np.empty(0, object))
    out = []
    for k, tile in enumerate(tiles):
        dk = np.sort(d_idx[d_tile == k])
        bk = np.sort(b_idx[b_tile == k])
        inside = ((crow >= tile.row0) & (crow < tile.row0 + tile.height)
                  & (ccol >= tile.col0) & (ccol < tile.col0 + tile.width))
        out.append(TileVectors(
            district_wkb=d_wkb[dk], district_label=dk + 1,
            district_layer=polygons.district_layer[dk],
            building_wkb=b_wkb[bk] if len(bk) else np.empty(0, object), building_index=bk,
            centroid_index=scored_idx[inside],
            centroid_rc=np.stack([crow[inside] - tile.row0, ccol[inside] - tile.col0], axis=1),
            mask_wkb=b_wkb[mask_idx[k]] if len(mask_idx[k]) else np.empty(0, object),
        ))  # fmt: skip
    return out
