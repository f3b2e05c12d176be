"""The radar side of the synthetic city: Sentinel-1 GRD-like sigma0 per date and polarisation.

Each 10 m pixel's expected backscatter is the area-weighted sum of what covers it (power adds
in a resolution cell): fields, bare soil, urban open ground, roads, water and the buildings
inside it. Cover fractions come from rasterizing the layout `oversample` times finer; each
building's share of each pixel is kept as sparse (pixel, building, fraction) triplets so a
date costs a few bincounts, not a re-rasterization. The observed value is the expectation
times multiplicative speckle, Gamma(ENL, 1/ENL) (Sentinel-1 IW GRD ENL ~4.4).

Levels (dB) follow typical C-band values: buildings -2 VV (double bounce), open ground -11,
fields -11 (rising with crop growth), bare soil -13, roads -18, water -22. A destroyed building
loses its double bounce: its co-pol return drops by N(7, 2) dB (clipped to 2..12), cross-pol
by 0.6 of that, and the rubble gets a persistent texture; ground within 5 m of a ruin is
buried under rubble of the same mean level but a new texture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize

from ruinmap.synthetic.layout import FieldKind, Layout

__all__ = ["LandCover", "RadarModel", "Scene", "debris_fraction", "make_scene", "render"]


class LandCover:
    """Land-cover codes of `truth_landcover.tif` (the pixel's dominant cover)."""

    NONE = 0
    FIELD = 1  # farmland and parks
    SOIL = 2  # bare lots
    OPEN = 3  # urban open ground: yards, squares, pavements
    ROAD = 4
    BUILDING = 5
    WATER = 6


_FRACTION_CLASSES = (LandCover.FIELD, LandCover.SOIL, LandCover.OPEN, LandCover.ROAD,
                     LandCover.WATER)


@dataclass(frozen=True)
class RadarModel:
    """Every number of the backscatter model; pairs are (co-pol, cross-pol) dB."""

    enl: float = 4.4  # Sentinel-1 IW GRD high resolution
    soil_db: tuple[float, float] = (-13.0, -20.0)
    open_db: tuple[float, float] = (-11.0, -17.5)
    road_db: tuple[float, float] = (-18.0, -25.0)
    water_db: tuple[float, float] = (-22.0, -28.0)
    orchard_db: tuple[float, float] = (-9.5, -15.5)
    park_db: tuple[float, float] = (-9.0, -15.0)
    wheat_gain_db: tuple[float, float] = (5.0, 7.0)  # full canopy over bare soil
    plough_step_db: float = 3.0  # tillage or harvest: a step of either sign
    field_spread_db: float = 1.0  # between parcels, persistent
    building_db: tuple[float, float] = (-2.0, -9.5)
    building_spread_db: float = 3.0  # between buildings: orientation, material, height
    orbit_spread_db: float = 1.5  # one building seen from another look direction
    orbit_gain_db: float = 0.5  # distributed targets, per orbit (incidence angle)
    destroyed_drop_db: tuple[float, float] = (7.0, 2.0)  # mean, sd of the co-pol drop
    drop_clip_db: tuple[float, float] = (2.0, 12.0)
    cross_pol_drop_ratio: float = 0.6
    rubble_texture_db: float = 2.0  # persistent, per building and pixel
    debris_m: float = 5.0  # rubble spills this far into yards and streets
    # rubble on the ground: as bright as open ground on average, but re-textured, so it
    # changes pixels around a ruin without cancelling the loss of its double bounce
    debris_db: tuple[float, float] = (-11.0, -17.5)
    texture_db: float = 1.0  # persistent heterogeneity of every cover, per pixel
    moisture_db: float = 0.8  # per date: soil and crops wetter or drier
    wind_db: float = 2.5  # per date: wind roughens water (only ever brighter)
    building_jitter_db: float = 0.3  # per date and pixel: buildings are stable scatterers


@dataclass(frozen=True, eq=False)
class Scene:
    """What rendering a date needs, on the size x size pixel grid."""

    size: int
    fractions: dict[int, np.ndarray]  # LandCover code -> float32 cover fraction
    parcel: np.ndarray  # int32 index into Layout.fields per pixel, -1 none
    landcover: np.ndarray  # uint8 dominant LandCover per pixel
    texture: np.ndarray  # float32 persistent multiplicative heterogeneity
    pixel: np.ndarray  # int64 flat pixel index of each (pixel, building) triplet
    building: np.ndarray  # int64 building index of each triplet
    share: np.ndarray  # float32 fraction of the pixel the building covers
    rubble_texture: np.ndarray  # float32 per triplet
    debris: np.ndarray  # float32 fraction of the pixel's ground buried under rubble (post)
    debris_texture: np.ndarray  # float32 persistent multiplicative texture of that rubble


def _db(x: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, np.asarray(x, dtype=np.float64) / 10.0)


def _lognormal_db(
    rng: np.random.Generator, sd_db: float, shape: int | tuple[int, ...]
) -> np.ndarray:
    """float32 multiplicative noise 10^(N(0, sd_db) / 10), without float64 temporaries."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise *= np.float32(sd_db * np.log(10.0) / 10.0)
    return np.exp(noise, out=noise)


def debris_fraction(
    layout: Layout, destroyed: np.ndarray, size: int, pixel_size_m: float, oversample: int,
    model: RadarModel,
) -> np.ndarray:
    """`Scene.debris` for another set of destroyed buildings: the fraction of each pixel's
    ground (not under a building) within `model.debris_m` of a destroyed one, rasterized
    `oversample` x finer as `make_scene` does (a city destroyed on several dates has one
    debris field per date)."""
    k = oversample
    extent = size * pixel_size_m
    transform = Affine(pixel_size_m / k, 0.0, 0.0, 0.0, -pixel_size_m / k, extent)
    shape = (size * k, size * k)
    if not destroyed.any():
        return np.zeros((size, size), np.float32)
    debris_geoms = shapely.buffer(layout.buildings[destroyed], model.debris_m, quad_segs=2)
    buried = rasterize([(g, 1) for g in debris_geoms], out_shape=shape, transform=transform,
                       fill=0, dtype=np.uint8).astype(bool)
    has_building = rasterize([(g, 1) for g in layout.buildings], out_shape=shape,
                             transform=transform, fill=0, dtype=np.uint8).astype(bool)
    return _block_fraction(buried & ~has_building, k)


def _block_fraction(mask: np.ndarray, k: int) -> np.ndarray:
    rows, cols = mask.shape[0] // k, mask.shape[1] // k
    counts = mask.reshape(rows, k, cols, k).sum(axis=(1, 3), dtype=np.int32)
    return (counts / np.float32(k * k)).astype(np.float32)


def make_scene(
    layout: Layout, destroyed: np.ndarray, size: int, pixel_size_m: float, oversample: int,
    model: RadarModel, rng: np.random.Generator, strip_pixels: int = 1 << 24,
) -> Scene:
    """Rasterize the layout in strips, `oversample` x finer, into cover fractions and triplets.

    Ground within `model.debris_m` of a destroyed building is buried under rubble after the
    event; its fraction of each pixel is `Scene.debris`.
    """
    k = oversample
    fine = pixel_size_m / k
    extent = size * pixel_size_m
    n_buildings = layout.buildings.size

    cover_geoms = [(layout.outline, LandCover.OPEN)]
    cover_geoms += [(g, LandCover.FIELD) for g in layout.parks]
    cover_geoms += [(g, LandCover.SOIL) for g in layout.lots]
    cover_geoms += [(g, LandCover.ROAD) for g in layout.roads]
    if layout.river is not None:
        cover_geoms.append((layout.river, LandCover.WATER))
    cover_tree = shapely.STRtree([g for g, _ in cover_geoms])
    building_tree = shapely.STRtree(layout.buildings)
    debris_geoms = shapely.buffer(layout.buildings[destroyed], model.debris_m, quad_segs=2)
    debris_tree = shapely.STRtree(debris_geoms)
    debris = np.zeros((size, size), np.float32)

    fractions = {c: np.zeros((size, size), np.float32) for c in _FRACTION_CLASSES}
    fractions[LandCover.BUILDING] = np.zeros((size, size), np.float32)
    triplets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    rows_per_strip = max(1, strip_pixels // (size * k * k))
    for r0 in range(0, size, rows_per_strip):
        r1 = min(size, r0 + rows_per_strip)
        top = extent - r0 * pixel_size_m
        bottom = extent - r1 * pixel_size_m
        strip_box = shapely.box(0.0, bottom, extent, top)
        transform = Affine(fine, 0.0, 0.0, 0.0, -fine, top)
        shape = ((r1 - r0) * k, size * k)
        # sorted indices keep the burn order: later covers win
        hits = np.sort(cover_tree.query(strip_box))
        cover = rasterize(
            [cover_geoms[i] for i in hits], out_shape=shape, transform=transform,
            fill=LandCover.FIELD, dtype=np.uint8,
        ) if hits.size else np.full(shape, LandCover.FIELD, np.uint8)
        hits = np.sort(building_tree.query(strip_box))
        ids = rasterize(
            [(layout.buildings[i], int(i) + 1) for i in hits], out_shape=shape,
            transform=transform, fill=0, dtype=np.int32,
        ) if hits.size else np.zeros(shape, np.int32)
        has_building = ids > 0
        cover[has_building] = LandCover.BUILDING
        hits = np.sort(debris_tree.query(strip_box))
        if hits.size:
            buried = rasterize(
                [(debris_geoms[i], 1) for i in hits], out_shape=shape, transform=transform,
                fill=0, dtype=np.uint8,
            ).astype(bool)
            debris[r0:r1] = _block_fraction(buried & ~has_building, k)
        for c in fractions:
            fractions[c][r0:r1] = _block_fraction(cover == c, k)
        fr, fc = np.nonzero(has_building)
        pixel = (r0 + fr // k).astype(np.int64) * size + fc // k
        key = pixel * (n_buildings + 1) + ids[fr, fc]
        unique, counts = np.unique(key, return_counts=True)
        triplets.append((unique // (n_buildings + 1), unique % (n_buildings + 1) - 1,
                         (counts / (k * k)).astype(np.float32)))

    parcel = rasterize(
        [(g, i) for i, g in enumerate(layout.fields)], out_shape=(size, size),
        transform=Affine(pixel_size_m, 0.0, 0.0, 0.0, -pixel_size_m, extent), fill=-1,
        dtype=np.int32,
    )
    stacked = np.stack([fractions[c] for c in fractions])
    codes = np.array(list(fractions), np.uint8)
    landcover = codes[np.argmax(stacked, axis=0)]
    pixel = np.concatenate([t[0] for t in triplets])
    texture = _lognormal_db(rng, model.texture_db, (size, size))
    rubble = _lognormal_db(rng, model.rubble_texture_db, pixel.size)
    return Scene(
        size=size,
        fractions={c: fractions[c] for c in _FRACTION_CLASSES},
        parcel=parcel,
        landcover=landcover,
        texture=texture,
        pixel=pixel,
        building=np.concatenate([t[1] for t in triplets]),
        share=np.concatenate([t[2] for t in triplets]),
        rubble_texture=rubble,
        debris=debris,
        debris_texture=_lognormal_db(rng, model.rubble_texture_db, (size, size)),
    )


@dataclass(frozen=True, eq=False)
class Radiometry:
    """Per-building and per-parcel radar properties, drawn once for the whole series."""

    building_db: np.ndarray  # (n_orbits, 2, n_buildings) intact level, co/cross
    drop_db: np.ndarray  # (2, n_buildings) loss when destroyed, co/cross (0 if intact)
    parcel_offset_db: np.ndarray  # (n_parcels,) persistent
    wheat_onset_days: np.ndarray  # (n_parcels,) relative to the event
    wheat_tau_days: np.ndarray
    plough_day: np.ndarray
    plough_sign: np.ndarray
    orbit_gain_db: np.ndarray  # (n_orbits,)


def make_radiometry(
    layout: Layout, destroyed: np.ndarray, n_orbits: int, model: RadarModel,
    rng: np.random.Generator,
) -> Radiometry:
    n = layout.buildings.size
    spread = rng.normal(0.0, model.building_spread_db, n)
    per_orbit = rng.normal(0.0, model.orbit_spread_db, (n_orbits, n))
    level = np.stack([
        np.stack([model.building_db[0] + spread + per_orbit[o],
                  model.building_db[1] + 0.8 * spread + per_orbit[o]])
        for o in range(n_orbits)
    ])
    drop = np.clip(rng.normal(*model.destroyed_drop_db, n), *model.drop_clip_db) * destroyed
    n_parcels = layout.fields.size
    return Radiometry(
        building_db=level,
        drop_db=np.stack([drop, model.cross_pol_drop_ratio * drop]),
        parcel_offset_db=rng.normal(0.0, model.field_spread_db, n_parcels),
        wheat_onset_days=rng.uniform(-70.0, 70.0, n_parcels),
        wheat_tau_days=rng.uniform(8.0, 15.0, n_parcels),
        plough_day=rng.uniform(-40.0, 40.0, n_parcels),
        plough_sign=rng.choice([-1.0, 1.0], n_parcels),
        orbit_gain_db=rng.normal(0.0, model.orbit_gain_db, n_orbits),
    )


def _field_db(
    layout: Layout, radiometry: Radiometry, model: RadarModel, day: float, cross: int
) -> np.ndarray:
    """Backscatter (dB) of every field parcel on `day` (days after the event)."""
    kind = layout.field_kind
    level = np.full(kind.size, model.soil_db[cross])
    growth = 1.0 / (1.0 + np.exp(-(day - radiometry.wheat_onset_days) / radiometry.wheat_tau_days))
    level = np.where(kind == FieldKind.WHEAT, level + model.wheat_gain_db[cross] * growth, level)
    level = np.where(kind == FieldKind.ORCHARD, model.orchard_db[cross], level)
    level = np.where(kind == FieldKind.PARK, model.park_db[cross], level)
    ploughed = model.open_db[cross] + radiometry.plough_sign * model.plough_step_db * (
        day > radiometry.plough_day
    )
    level = np.where(kind == FieldKind.PLOUGHED, ploughed, level)
    return level + radiometry.parcel_offset_db


def building_terms(
    scene: Scene, radiometry: Radiometry, is_new: np.ndarray, orbit: int, is_post: bool,
    model: RadarModel,
) -> np.ndarray:
    """(2, size, size) summed building backscatter (linear) for co- and cross-pol."""
    out = np.empty((2, scene.size, scene.size), np.float32)
    for cross in (0, 1):
        level = _db(radiometry.building_db[orbit, cross])
        if is_post:
            drop = radiometry.drop_db[cross]
            per_triplet = (level * _db(-drop))[scene.building]
            destroyed = drop[scene.building] > 0
            per_triplet = np.where(destroyed, per_triplet * scene.rubble_texture, per_triplet)
        else:
            # a building site before it is built: bare soil
            level = np.where(is_new, _db(model.soil_db[cross]), level)
            per_triplet = level[scene.building]
        out[cross] = np.bincount(
            scene.pixel, weights=scene.share * per_triplet, minlength=scene.size**2
        ).reshape(scene.size, scene.size)
    return out


def render(
    scene: Scene, layout: Layout, radiometry: Radiometry, buildings: np.ndarray, *,
    day: float, orbit: int, is_post: bool, cross_pol: tuple[bool, ...], model: RadarModel,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n_pol, size, size) float32 linear sigma0 of one acquisition, speckled; no nodata yet.

    `buildings` is `building_terms(...)` for this orbit and phase (pre or post).
    """
    size = scene.size
    moisture = float(_db(rng.normal(0.0, model.moisture_db)))
    wind = float(_db(abs(rng.normal(0.0, model.wind_db))))
    gain = float(_db(radiometry.orbit_gain_db[orbit]))
    f = scene.fractions
    kept = None
    if is_post:
        ground_area = sum(f.values(), np.zeros((size, size), np.float32))
        # debris replaces a share of whatever ground the pixel has
        kept = 1.0 - scene.debris / np.maximum(ground_area, np.float32(1e-6))
        del ground_area
    out = np.empty((len(cross_pol), size, size), np.float32)
    for band, is_cross in enumerate(cross_pol):
        c = int(is_cross)
        # index 0 stands for "no parcel": bare soil
        field = np.concatenate([
            [_db(model.soil_db[c])], _db(_field_db(layout, radiometry, model, day, c))
        ]).astype(np.float32)
        mean = out[band]
        np.take(field, scene.parcel + 1, out=mean)
        mean *= f[LandCover.FIELD]
        mean += f[LandCover.SOIL] * np.float32(_db(model.soil_db[c]))
        mean *= np.float32(moisture)
        mean += f[LandCover.OPEN] * np.float32(_db(model.open_db[c]) * np.sqrt(moisture))
        mean += f[LandCover.ROAD] * np.float32(_db(model.road_db[c]))
        mean += f[LandCover.WATER] * np.float32(_db(model.water_db[c]) * wind)
        mean *= scene.texture
        if kept is not None:
            mean *= kept
            mean += scene.debris * scene.debris_texture * np.float32(_db(model.debris_db[c]))
        mean *= np.float32(gain)
        mean += buildings[c] * _lognormal_db(rng, model.building_jitter_db, (size, size))
        mean *= rng.standard_gamma(model.enl, (size, size), dtype=np.float32)
        mean *= np.float32(1.0 / model.enl)
    return out
