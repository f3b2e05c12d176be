"""The vector side of the synthetic city: streets, blocks, buildings, fields, a river, districts.

Everything is in local metres: u east and v north from the lower-left corner of the raster
extent, so the layout does not depend on the CRS; `make_city` shifts it into the grid's CRS.
The street grid is a rotated, jittered orthogonal grid (most Levantine and European city
extensions look like this at 10 m), blocks are cut into back-to-back rows of parcels, and
each parcel holds one building with setbacks, some with a shed in the back yard.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPoint, Polygon, box

__all__ = ["FieldKind", "Layout", "make_districts", "make_layout"]


class FieldKind:
    """How a vegetated parcel's backscatter evolves between dates (see radar.py)."""

    FALLOW = 0  # bare, only soil moisture changes
    WHEAT = 1  # winter crop: grows, backscatter rises over a few weeks
    ORCHARD = 2  # olive/pistachio trees: stable
    PLOUGHED = 3  # tilled or harvested once: a step change at a random date
    PARK = 4  # urban park: stable vegetation


@dataclass(frozen=True, eq=False)
class Layout:
    """A city in local metres (u east, v north, origin at the extent's lower-left corner)."""

    extent_m: float
    centre: tuple[float, float]
    radius_m: float
    street_angle_deg: float
    outline: Polygon
    roads: np.ndarray  # Polygon per street segment or highway
    river: Polygon | None
    parks: np.ndarray  # Polygon per park block
    lots: np.ndarray  # Polygon per empty (bare) block
    buildings: np.ndarray  # Polygon per building
    building_area_m2: np.ndarray  # float64, exact footprint area
    is_shed: np.ndarray  # bool: back-yard shed
    fields: np.ndarray  # Polygon per field parcel (may extend past the extent), then parks
    field_kind: np.ndarray  # int8 FieldKind per entry of `fields`


def _rotate(p: np.ndarray, q: np.ndarray, angle: float, centre: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([centre[0] + c * p - s * q, centre[1] + s * p + c * q], axis=-1)


def _rotated_boxes(
    p0: np.ndarray, q0: np.ndarray, p1: np.ndarray, q1: np.ndarray, angle: float,
    centre: np.ndarray,
) -> np.ndarray:
    """Rectangles given in the street frame (p along, q across), as polygons in local metres."""
    boxes = shapely.box(p0, q0, p1, q1)
    c, s = np.cos(angle), np.sin(angle)

    def to_local(coords: np.ndarray) -> np.ndarray:
        p, q = coords[:, 0], coords[:, 1]
        return np.stack([centre[0] + c * p - s * q, centre[1] + s * p + c * q], axis=1)

    return np.asarray(shapely.transform(boxes, to_local))


def _street_lines(
    rng: np.random.Generator, half_span: float, gap: tuple[float, float], arterial_every: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and widths (m) of parallel streets across [-half_span, half_span]."""
    n = int(np.ceil(2 * half_span / gap[0])) + 2
    positions = -half_span + np.concatenate([[0.0], np.cumsum(rng.uniform(*gap, n))])
    positions = positions[positions <= half_span]
    widths = rng.uniform(7.0, 12.0, positions.size)
    offset = int(rng.integers(arterial_every))
    arterial = (np.arange(positions.size) + offset) % arterial_every == 0
    widths[arterial] = rng.uniform(20.0, 28.0, int(arterial.sum()))
    return positions, widths


def make_layout(size: int, pixel_size_m: float, rng: np.random.Generator) -> Layout:
    """A city filling the middle of a size x size pixel extent, with farmland around it."""
    extent = size * pixel_size_m
    centre = extent / 2 + rng.normal(0.0, 0.03 * extent, 2)
    radius = 0.3 * extent
    angle = np.deg2rad(rng.uniform(-25.0, 25.0))

    theta = np.linspace(0.0, 2 * np.pi, 97)[:-1]
    phase = rng.uniform(0.0, 2 * np.pi, 2)
    r = radius * (1 + 0.12 * np.sin(3 * theta + phase[0]) + 0.07 * np.sin(5 * theta + phase[1]))
    outline = Polygon(np.stack([centre[0] + r * np.cos(theta), centre[1] + r * np.sin(theta)], 1))

    # streets: p-lines run across q, q-lines across p; blocks are the cells between them
    half = 1.3 * radius
    p_pos, p_width = _street_lines(rng, half, (80.0, 160.0), 5)
    q_pos, q_width = _street_lines(rng, half, (55.0, 110.0), 6)
    streets = np.concatenate([
        _rotated_boxes(p_pos - p_width / 2, np.full(p_pos.size, -half), p_pos + p_width / 2,
                       np.full(p_pos.size, half), angle, centre),
        _rotated_boxes(np.full(q_pos.size, -half), q_pos - q_width / 2, np.full(q_pos.size, half),
                       q_pos + q_width / 2, angle, centre),
    ])
    streets = shapely.intersection(streets, outline.buffer(40.0))

    # radial highways out to the edge of the extent
    n_highways = 3
    headings = rng.uniform(0, 2 * np.pi) + np.arange(n_highways) * 2 * np.pi / n_highways
    headings += rng.normal(0, 0.3, n_highways)
    far = 2 * extent
    highways = [
        LineString([centre, centre + far * np.array([np.cos(h), np.sin(h)])]).buffer(
            rng.uniform(7.0, 10.0), cap_style="flat"
        )
        for h in headings
    ]
    extent_box = box(0.0, 0.0, extent, extent)
    roads = np.concatenate([streets, shapely.intersection(np.array(highways), extent_box)])
    roads = roads[~shapely.is_empty(roads)]

    # a river across the extent, meandering, passing near the centre
    u = np.linspace(-0.1 * extent, 1.1 * extent, 200)
    v0 = centre[1] + rng.uniform(-0.25, 0.25) * radius
    v = v0 + 0.05 * extent * np.sin(2 * np.pi * u / (0.6 * extent) + rng.uniform(0, 2 * np.pi))
    river = LineString(np.stack([u, v], 1)).buffer(rng.uniform(15.0, 30.0))
    river = shapely.intersection(river, extent_box)

    # blocks
    p_grid, q_grid = np.meshgrid(np.arange(p_pos.size - 1), np.arange(q_pos.size - 1),
                                 indexing="ij")
    pi, qi = p_grid.ravel(), q_grid.ravel()
    bp0 = p_pos[pi] + p_width[pi] / 2
    bp1 = p_pos[pi + 1] - p_width[pi + 1] / 2
    bq0 = q_pos[qi] + q_width[qi] / 2
    bq1 = q_pos[qi + 1] - q_width[qi + 1] / 2
    mid = _rotate((bp0 + bp1) / 2, (bq0 + bq1) / 2, angle, centre)
    inside = shapely.contains_xy(outline, mid[:, 0], mid[:, 1])
    bp0, bp1, bq0, bq1, mid = bp0[inside], bp1[inside], bq0[inside], bq1[inside], mid[inside]
    blocks = _rotated_boxes(bp0, bq0, bp1, bq1, angle, centre)
    wet = shapely.intersects(blocks, river)
    kind = rng.choice(3, size=blocks.size, p=[0.92, 0.04, 0.04])  # built, park, lot
    kind[wet] = 1  # river banks are green
    parks, lots = blocks[kind == 1], blocks[kind == 2]
    built = kind == 0
    bp0, bp1, bq0, bq1, mid = bp0[built], bp1[built], bq0[built], bq1[built], mid[built]

    # parcels: blocks deeper than 50 m have two back-to-back rows, fronting opposite streets
    depth = bq1 - bq0
    two_rows = depth > 50.0
    row_block = np.concatenate([np.arange(depth.size), np.flatnonzero(two_rows)])
    row_front_low = np.concatenate([np.ones(depth.size, bool), np.zeros(two_rows.sum(), bool)])
    row_depth = np.where(two_rows, depth / 2, depth)[row_block]
    row_q0 = np.where(row_front_low, bq0[row_block], bq0[row_block] + row_depth)
    row_len = (bp1 - bp0)[row_block]
    row_p0 = bp0[row_block]

    n_max = int(np.ceil(row_len.max() / 10.0)) + 1 if row_len.size else 1
    frontage = rng.uniform(10.0, 24.0, (row_len.size, n_max))
    large = rng.random(frontage.shape) < 0.1  # apartment blocks, schools, workshops
    frontage[large] = rng.uniform(30.0, 50.0, int(large.sum()))
    end = np.cumsum(frontage, axis=1)
    fits = end <= row_len[:, None]
    row_of, slot = np.nonzero(fits)
    w = frontage[row_of, slot]
    a0 = row_p0[row_of] + end[row_of, slot] - w
    d = row_depth[row_of]
    front = row_front_low[row_of]
    q_start = row_q0[row_of]
    n_parcels = w.size

    # occupancy thins towards the outskirts
    parcel_mid = _rotate(a0 + w / 2, q_start + d / 2, angle, centre)
    dist = np.hypot(*(parcel_mid - centre).T) / radius
    occupied = rng.random(n_parcels) < np.clip(1.02 - 0.45 * dist**2, 0.3, 0.98)

    # the old core is built wall to wall; setbacks and yards grow towards the outskirts
    loose = np.clip(dist, 0.25, 1.0)
    side = rng.uniform(0.0, 2.0, (n_parcels, 2)) * loose[:, None]
    front_setback = rng.uniform(0.0, 4.0, n_parcels) * loose
    back_setback = rng.uniform(1.0, 2.0, n_parcels) + rng.uniform(0.0, 0.35, n_parcels) * d * loose
    bw = np.clip(w - side.sum(1), 4.0, None)
    bd = np.clip(d - front_setback - back_setback, 4.0, None)
    too_big = bw * bd > 2000.0  # cap at 2000 m^2 by shortening the depth
    bd[too_big] = 2000.0 / bw[too_big]
    keep = occupied & (bw * bd >= 60.0)
    # the building fronts its street: q from the front edge inwards
    b_p0 = a0 + side[:, 0]
    b_q0 = np.where(front, q_start + front_setback, q_start + d - front_setback - bd)
    houses = _rotated_boxes(b_p0[keep], b_q0[keep], (b_p0 + bw)[keep], (b_q0 + bd)[keep],
                            angle, centre)
    house_area = (bw * bd)[keep]

    # sheds in back yards deep enough for one
    yard = d - front_setback - bd
    shed_w = rng.uniform(3.5, 7.0, n_parcels)
    shed_d = rng.uniform(3.5, 7.0, n_parcels)
    has_shed = occupied & (yard >= shed_d + 1.5) & (rng.random(n_parcels) < 0.15)
    s_p0 = a0 + (w - shed_w) / 2
    s_q0 = np.where(front, q_start + d - 0.5 - shed_d, q_start + 0.5)
    sheds = _rotated_boxes(s_p0[has_shed], s_q0[has_shed], (s_p0 + shed_w)[has_shed],
                           (s_q0 + shed_d)[has_shed], angle, centre)
    shed_area = (shed_w * shed_d)[has_shed]

    buildings = np.concatenate([houses, sheds])
    area = np.concatenate([house_area, shed_area])
    is_shed = np.concatenate([np.zeros(houses.size, bool), np.ones(sheds.size, bool)])
    dry = ~shapely.intersects(buildings, river) & shapely.within(buildings, extent_box)
    buildings, area, is_shed = buildings[dry], area[dry], is_shed[dry]

    fields, field_kind = _fields(extent, rng)
    return Layout(
        extent_m=extent,
        centre=(float(centre[0]), float(centre[1])),
        radius_m=radius,
        street_angle_deg=float(np.rad2deg(angle)),
        outline=outline,
        roads=roads,
        river=river if not river.is_empty else None,
        parks=parks,
        lots=lots,
        buildings=buildings,
        building_area_m2=area,
        is_shed=is_shed,
        fields=np.concatenate([fields, parks]),
        field_kind=np.concatenate(
            [field_kind, np.full(parks.size, FieldKind.PARK, np.int8)]
        ),
    )


def _fields(extent: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Farmland parcels on their own rotated grid covering the extent."""
    angle = np.deg2rad(rng.uniform(-40.0, 40.0))
    centre = np.array([extent / 2, extent / 2])
    half = 0.75 * extent  # covers the square's corners at any angle
    edges = []
    for gap in ((150.0, 400.0), (120.0, 300.0)):
        n = int(np.ceil(2 * half / gap[0])) + 2
        pos = -half + np.concatenate([[0.0], np.cumsum(rng.uniform(*gap, n))])
        edges.append(pos[pos <= half + gap[1]])
    p0, q0 = np.meshgrid(edges[0][:-1], edges[1][:-1], indexing="ij")
    p1, q1 = np.meshgrid(edges[0][1:], edges[1][1:], indexing="ij")
    parcels = _rotated_boxes(p0.ravel(), q0.ravel(), p1.ravel(), q1.ravel(), angle, centre)
    parcels = parcels[shapely.intersects(parcels, box(0.0, 0.0, extent, extent))]
    kind = rng.choice(
        [FieldKind.FALLOW, FieldKind.WHEAT, FieldKind.ORCHARD, FieldKind.PLOUGHED],
        size=parcels.size, p=[0.3, 0.4, 0.2, 0.1],
    ).astype(np.int8)
    return parcels, kind


_SECTORS = ("East", "North-East", "North", "North-West", "West", "South-West", "South",
            "South-East")


def make_districts(
    layout: Layout, n_districts: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voronoi districts covering the extent, most of them in the city.

    Returns (polygons, names, is_urban). Three quarters of the seeds lie in the city, the rest
    outside; each set is spread by farthest-point sampling, so districts are compact and of
    similar size within the city.
    """
    extent = layout.extent_m
    centre = np.asarray(layout.centre)
    n_urban = max(1, round(0.75 * n_districts))
    pool_size = max(64, 30 * n_districts)
    r = layout.radius_m * np.sqrt(rng.random(pool_size))
    t = rng.uniform(0, 2 * np.pi, pool_size)
    city_pool = centre + np.stack([r * np.cos(t), r * np.sin(t)], 1)
    city_pool = city_pool[shapely.contains_xy(layout.outline, city_pool[:, 0], city_pool[:, 1])]
    rural_pool = rng.uniform(0, extent, (pool_size, 2))
    rural_pool = rural_pool[~shapely.contains_xy(layout.outline, *rural_pool.T)]

    def farthest(pool: np.ndarray, n: int, seeds: np.ndarray) -> np.ndarray:
        n = min(n, len(pool))
        if n <= 0:
            return np.empty((0, 2))
        if len(seeds):
            nearest = np.hypot(*(pool[:, None, :] - seeds[None, :, :]).transpose(2, 0, 1)).min(1)
            chosen = []
        else:  # the first district is the old centre
            chosen = [int(np.argmin(np.hypot(*(pool - centre).T)))]
            nearest = np.hypot(*(pool - pool[chosen[0]]).T)
        while len(chosen) < n:
            chosen.append(int(np.argmax(nearest)))
            nearest = np.minimum(nearest, np.hypot(*(pool - pool[chosen[-1]]).T))
        return pool[chosen]

    urban = farthest(city_pool, n_urban, np.empty((0, 2)))
    rural = farthest(rural_pool, n_districts - len(urban), urban)
    seeds = np.concatenate([urban, rural])

    extent_box = box(0.0, 0.0, extent, extent)
    cells = shapely.voronoi_polygons(MultiPoint(seeds), extend_to=extent_box, ordered=True)
    polygons = shapely.intersection(np.asarray(shapely.get_parts(cells)), extent_box)

    rel = seeds - centre
    dist = np.hypot(*rel.T) / layout.radius_m
    sector = ((np.degrees(np.arctan2(rel[:, 1], rel[:, 0])) + 22.5) % 360 // 45).astype(int)
    is_urban = np.arange(len(seeds)) < len(urban)
    counts: dict[str, int] = {}
    names = []
    for i in np.argsort(dist, kind="stable"):
        if dist[i] < 0.25:
            base = "Old City"
        elif is_urban[i]:
            base = _SECTORS[sector[i]]
        else:
            base = f"{_SECTORS[sector[i]]} Outskirts"
        counts[base] = counts.get(base, 0) + 1
        names.append((i, f"{base} {counts[base]}"))
    name_of = dict(names)
    return polygons, np.array([name_of[i] for i in range(len(seeds))], dtype=object), is_urban
