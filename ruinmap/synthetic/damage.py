"""Which buildings the synthetic war destroys, which are built meanwhile, and the truth tables.

Destruction is clustered the way it is in a besieged city: a front on one side of the city,
a quarter of the urban districts facing it, one to three hotspots (shelling, air strikes) in
each, and the chance that a building is destroyed falling off as a Gaussian of its distance to
the nearest hotspot, plus a thin background of isolated strikes. New construction (a
distractor: change that is not damage) favours the outskirts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from ruinmap.synthetic.layout import Layout

__all__ = ["DamagePlan", "choose_damage", "district_truth", "weighted_sample"]


@dataclass(frozen=True, eq=False)
class DamagePlan:
    """Per-building truth, aligned with `Layout.buildings`."""

    destroyed: np.ndarray  # bool
    is_new: np.ndarray  # bool: built between the last pre and the first post date
    district: np.ndarray  # int index into the district arrays, -1 outside all
    hotspots: np.ndarray  # (n, 2) local metres
    front_districts: np.ndarray  # int indices of the districts facing the front


def weighted_sample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct indices drawn with probability proportional to `weights` (zero: never).

    Efraimidis-Spirakis keys log(u) / w, largest n: one vectorised pass, no Python loop.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = min(int(n), int(np.count_nonzero(weights > 0)))
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    with np.errstate(divide="ignore"):
        keys = np.log(rng.random(weights.size)) / weights
    keys[weights <= 0] = -np.inf
    return np.argpartition(-keys, n - 1)[:n]


def _saturating_sample(weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n distinct indices, each with inclusion chance about min(1, c * weight) summing to n.

    Hotspot cores saturate (nearly every building there is hit), as in a besieged quarter,
    instead of the damage spreading thinly in proportion to the weights.
    """
    n = min(int(n), int(np.count_nonzero(weights > 0)))
    if n <= 0:
        return np.empty(0, dtype=np.intp)
    lo, hi = 0.0, n / weights[weights > 0].min()
    for _ in range(60):  # bisection on c: sum(min(1, c w)) = n
        c = (lo + hi) / 2
        lo, hi = (c, hi) if np.minimum(1.0, c * weights).sum() < n else (lo, c)
    p = np.minimum(1.0, hi * weights)
    with np.errstate(divide="ignore"):
        keys = rng.random(weights.size) / p  # u / p: certain picks (p = 1) come first
    return np.argpartition(keys, n - 1)[:n]


def _district_of(points: np.ndarray, districts: np.ndarray) -> np.ndarray:
    tree = shapely.STRtree(districts)
    point_idx, district_idx = tree.query(shapely.points(points), predicate="intersects")
    out = np.full(len(points), -1, dtype=np.int64)
    # a point on a shared edge is in two districts; the lower index wins, deterministically
    order = np.lexsort((district_idx, point_idx))
    points_sorted, first = np.unique(point_idx[order], return_index=True)
    out[points_sorted] = district_idx[order][first]
    return out


def choose_damage(
    layout: Layout,
    districts: np.ndarray,
    is_urban: np.ndarray,
    rng: np.random.Generator,
    *,
    destroyed_fraction: float,
    new_fraction: float,
) -> DamagePlan:
    """Pick destroyed and newly built buildings; fractions are of all buildings."""
    n = layout.buildings.size
    centre = np.asarray(layout.centre)
    xy = shapely.get_coordinates(shapely.centroid(layout.buildings)).reshape(-1, 2)
    district = _district_of(xy, districts)

    dist = np.hypot(*(xy - centre).T) / layout.radius_m
    is_new = np.zeros(n, bool)
    is_new[weighted_sample(dist**3 + 1e-3, round(new_fraction * n), rng)] = True

    urban = np.flatnonzero(is_urban)
    if urban.size == 0:
        urban = np.arange(len(districts))
    heading = rng.uniform(0, 2 * np.pi)
    district_xy = shapely.get_coordinates(shapely.centroid(districts)).reshape(-1, 2)
    facing = (district_xy[urban] - centre) @ np.array([np.cos(heading), np.sin(heading)])
    n_front = max(1, round(0.25 * urban.size))
    front = urban[np.argsort(-facing, kind="stable")[:n_front]]

    hotspots = []
    for d in front:
        members = np.flatnonzero(district == d)
        k = int(rng.integers(1, 4))
        if members.size:
            hotspots.append(xy[rng.choice(members, size=min(k, members.size), replace=False)])
        else:
            hotspots.append(district_xy[d][None, :])
    spots = np.concatenate(hotspots)
    sigma = rng.uniform(100.0, 300.0, len(spots))
    weight = np.full(n, 0.02)  # isolated strikes anywhere
    for spot, s in zip(spots, sigma, strict=True):
        weight += np.exp(-((xy - spot) ** 2).sum(1) / (2 * s * s))
    weight[is_new] = 0.0  # built after the fighting
    destroyed = np.zeros(n, bool)
    destroyed[_saturating_sample(weight, round(destroyed_fraction * n), rng)] = True
    return DamagePlan(destroyed=destroyed, is_new=is_new, district=district, hotspots=spots,
                      front_districts=front)


def district_truth(
    district_ids: np.ndarray, names: np.ndarray, plan: DamagePlan, area_m2: np.ndarray
) -> pd.DataFrame:
    """Per district: building counts, areas and `damaged_fraction`.

    damaged_fraction = footprint area of destroyed buildings / footprint area of all buildings
    whose centroid lies in the district (new buildings included: they are in the footprint
    file); NaN where the district has no building.
    """
    n = len(district_ids)
    inside = plan.district >= 0
    idx = plan.district[inside]
    area = area_m2[inside]
    lost = plan.destroyed[inside]
    n_buildings = np.bincount(idx, minlength=n)
    n_destroyed = np.bincount(idx, weights=lost, minlength=n).astype(np.int64)
    building_area = np.bincount(idx, weights=area, minlength=n)
    destroyed_area = np.bincount(idx, weights=area * lost, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(building_area > 0, destroyed_area / building_area, np.nan)
    return pd.DataFrame({
        "district_id": district_ids,
        "name": names,
        "n_buildings": n_buildings,
        "n_destroyed": n_destroyed,
        "building_area_m2": building_area,
        "destroyed_area_m2": destroyed_area,
        "damaged_fraction": fraction,
    })
