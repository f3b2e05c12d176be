"""Ground-truth damage labels, read as their producers publish them, as one `Labels` value.

Three sources: UNOSAT damage-site points (any file GDAL opens, the layouts in `unosat`),
xBD building polygons (`xbd`), and any point or polygon layer with a class field. Classes are
understood in the UNOSAT or xBD vocabulary (or, for a file of its own, from
`damaged_classes`). Each site keeps one class, the latest recorded at or before the cutoff
(`date`, else `post_end`); classes that say nothing (no coverage, possible damage,
un-classified) are dropped, and so are sites with no record by then. The CRS is checked
against the coordinates (`label_crs`) and the frame returned in the results' CRS.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import geopandas as gpd
import pandas as pd
import pyogrio

from ruinmap.cluster.geo.vectors import PARQUET_SUFFIXES, read_vector
from ruinmap.cluster.storage.confined import (
    check_folder_inside,
    confined_vector_path,
    current_roots,
)
from ruinmap.cluster.validation.label_crs import resolve_label_crs
from ruinmap.cluster.validation.unosat import (
    NO_COVERAGE,
    UNOSAT_CLASSES,
    UNOSAT_DAMAGED,
    UNOSAT_UNDAMAGED,
    TableRecords,
    table_records,
    unosat_code,
)
from ruinmap.cluster.validation.xbd import (
    XBD_CLASSES,
    XBD_DAMAGED,
    XBD_UNDAMAGED,
    read_xbd,
    xbd_code,
    xbd_files,
)
from ruinmap.errors import InputError

__all__ = ["Labels", "read_labels"]

_POINTS = ("Point", "MultiPoint")
_POLYGONS = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Labels:
    """Damage labels, one row per site or building.

    `frame` columns: `label_class` (str, the producer's class: UNOSAT codes as text such as
    "1", xBD subtypes such as "destroyed"), `damaged` (bool), `label_date` (datetime64[ns],
    NaT when the file has no dates) and geometry, in the results' CRS when one was given.
    `class_field` is the field read (or a description such as "date columns
    2014-05-01..2017-02-07"); `epoch` the latest assessment date used; `notes` one sentence
    per assumption or repair.
    """

    frame: gpd.GeoDataFrame
    kind: Literal["points", "polygons"]
    path: str
    layer: str | None
    class_field: str
    damaged_classes: tuple[str, ...]
    undamaged_classes: tuple[str, ...]
    epoch: datetime.date | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class _Vocabulary:
    """How one producer writes classes: `canonical` maps text to a code (None: unknown)."""

    name: str
    meaning: dict[str, str]
    damaged: tuple[str, ...]
    undamaged: tuple[str, ...]
    canonical: Callable[[str], str | None]


_UNOSAT = _Vocabulary("UNOSAT", UNOSAT_CLASSES, UNOSAT_DAMAGED, UNOSAT_UNDAMAGED, unosat_code)
_XBD = _Vocabulary("xBD", XBD_CLASSES, XBD_DAMAGED, XBD_UNDAMAGED, xbd_code)


def read_labels(
    path: str | Path,
    *,
    layer: str | None = None,
    class_field: str | None = None,
    damaged_classes: Sequence[str] | None = None,
    date_field: str | None = None,
    date: datetime.date | None = None,
    post_end: datetime.date | None = None,
    labels_crs: str | None = None,
    results_crs: str | None = None,
    results_bounds: tuple[float, float, float, float] | None = None,
) -> Labels:
    """The labels in `path` (module docstring), InputError when they cannot be used.

    `damaged_classes` replaces the producer's damaged set (undamaged stays its no-damage
    classes, other known classes are ignored); `date` or else `post_end` is the cutoff;
    `labels_crs` overrides the file's CRS; `results_crs` / `results_bounds` (in it) are the
    job's grid, used to repair a wrong CRS and as the frame's CRS.
    """
    text = str(path)
    notes: list[str] = []
    xbd = xbd_files(path)
    if xbd is not None:
        read = read_xbd(xbd)
        records, sites, used_layer = read.records, read.sites, None
        kind: Literal["points", "polygons"] = "polygons"
        field, vocabulary = "subtype", _XBD
        text = read.post_files[0] if len(read.post_files) == 1 else text
        if len(read.post_files) > 1 or read.pre_files:
            notes.append(f"read {len(read.post_files)} xBD post-disaster files; "
                         f"{len(read.pre_files)} pre-disaster files (no subtype) skipped.")
    else:
        used_layer, frame, read_notes = _read_layer(text, layer)
        frame, kind, kind_notes = _one_kind(frame, text, used_layer)
        table = table_records(frame, text, class_field=class_field, date_field=date_field)
        records, sites, field = table.records, table.sites, table.class_field
        vocabulary = _choose_vocabulary(table, text, kind, damaged_classes)
        notes += [*read_notes, *kind_notes, *table.notes]

    located = resolve_label_crs(sites, text, labels_crs=labels_crs, results_crs=results_crs,
                                results_bounds=results_bounds)
    notes += located.notes
    codes, code_notes = _canonical(records, vocabulary, damaged_classes, text, field)
    damaged, undamaged = _class_sets(vocabulary, damaged_classes, codes)
    records = records.assign(label_class=codes)
    chosen, epoch, epoch_notes = _latest(records, len(sites), text, date, post_end)
    notes += [*code_notes, *epoch_notes]

    is_damaged = chosen["label_class"].isin(damaged)
    is_undamaged = chosen["label_class"].isin(undamaged)
    ignored = chosen.loc[~is_damaged & ~is_undamaged, "label_class"].value_counts()
    if len(ignored):
        counted = ", ".join(f"{n} of class {c} ({vocabulary.meaning.get(str(c), 'other')})"
                            for c, n in ignored.items())
        notes.append(f"dropped {counted}: neither damaged nor undamaged.")
    if not bool(is_damaged.any()):
        at = f"at epoch {epoch}" if epoch is not None else "in the file (no dates)"
        raise InputError(
            f"{text}: no damaged labels (classes {', '.join(damaged)} in {field}) {at}; "
            f"{int(is_undamaged.sum())} labels are undamaged and {int(ignored.sum())} "
            f"ignored; name the damaged classes with damaged_classes or pick another --date")
    kept = chosen[is_damaged | is_undamaged]
    out = gpd.GeoDataFrame(
        {"label_class": kept["label_class"].astype(str).to_numpy(),
         "damaged": kept["label_class"].isin(damaged).to_numpy(bool),
         "label_date": kept["label_date"].to_numpy("datetime64[ns]")},
        geometry=located.frame.geometry.iloc[kept["site"].to_numpy()].reset_index(drop=True),
        crs=located.frame.crs)
    return Labels(out, kind, text, used_layer, field, damaged, undamaged, epoch, tuple(notes))


def _read_layer(path: str, layer: str | None) -> tuple[str | None, gpd.GeoDataFrame, list[str]]:
    """The layer to read (`layer`, else the first point layer, else the first) and its rows,
    the file opened confined to the data roots when `current_roots()` is set (the service)."""
    if Path(path).is_dir():  # a File Geodatabase: GDAL opens the folder by name
        check_folder_inside(path, current_roots())
        return _read_opened_layer(path, path, layer)
    with confined_vector_path(path, current_roots()) as opened:
        return _read_opened_layer(path, opened, layer)


def _read_opened_layer(path: str, opened: str, layer: str | None
                       ) -> tuple[str | None, gpd.GeoDataFrame, list[str]]:
    notes: list[str] = []
    if Path(path).suffix.lower() in PARQUET_SUFFIXES:
        return None, read_vector(opened), notes
    try:
        layers = pyogrio.list_layers(opened)
    except Exception as exc:  # GDAL raises several kinds; all mean "cannot open"
        raise InputError(f"{path}: cannot open this vector file ({exc})") from None
    names = [str(name) for name, _ in layers]
    if layer is not None and layer not in names:
        raise InputError(f"{path}: no layer {layer!r}; the layers are {', '.join(names)}")
    if layer is None:
        points = [str(n) for n, g in layers if g is not None and "Point" in str(g)]
        layer = points[0] if points else (names[0] if names else None)
        if len(names) > 1:
            why = "the first point layer" if points else "the first layer"
            notes.append(f"the file has {len(names)} layers ({', '.join(names)}); read "
                         f"{layer!r}, {why} (choose another with layer).")
    frame = read_vector(opened, layer=layer)
    if len(frame) == 0:
        raise InputError(f"{path}: layer {layer!r} has no features; "
                         f"give a file or layer with labels")
    return layer, frame, notes


def _one_kind(frame: gpd.GeoDataFrame, path: str, layer: str | None
              ) -> tuple[gpd.GeoDataFrame, Literal["points", "polygons"], list[str]]:
    """The frame's points or its polygons, whichever are more; the rest dropped with a note."""
    types = frame.geometry.geom_type
    missing = frame.geometry.isna() | frame.geometry.is_empty
    n_points = int((types.isin(_POINTS) & ~missing).sum())
    n_polygons = int((types.isin(_POLYGONS) & ~missing).sum())
    if n_points == 0 and n_polygons == 0:
        found = ", ".join(sorted(str(t) for t in types.dropna().unique())) or "none"
        raise InputError(f"{path}: layer {layer!r} has no point or polygon geometries "
                         f"(found: {found}); labels are points or polygons")
    kind: Literal["points", "polygons"] = "polygons" if n_polygons > n_points else "points"
    keep = types.isin(_POLYGONS if kind == "polygons" else _POINTS) & ~missing
    notes = []
    if not bool(keep.all()):
        kinds = types.where(~missing, "empty")
        other = ", ".join(f"{n} {t}" for t, n in kinds[~keep].value_counts().items())
        notes.append(f"dropped {other} geometries from a layer of {kind}.")
    return frame[keep].reset_index(drop=True), kind, notes


def _choose_vocabulary(table: TableRecords, path: str, kind: str,
                       damaged_classes: Sequence[str] | None) -> _Vocabulary:
    """UNOSAT for UNOSAT layouts; else the known vocabulary covering the classes found; else
    the file's own, which needs `damaged_classes`."""
    if table.is_unosat:
        return _UNOSAT
    found = sorted({str(v) for v in table.records["label_class"]})
    named = {str(v) for v in damaged_classes or ()}
    for vocabulary in (_UNOSAT, _XBD):
        if all(vocabulary.canonical(v) is not None or v in named for v in found):
            return vocabulary
    for vocabulary in (_UNOSAT, _XBD):
        if any(vocabulary.canonical(v) is not None for v in found):
            return vocabulary  # mostly this producer's: _canonical names the strays
    if damaged_classes is None:
        raise InputError(
            f"{path}: the {kind} classes in {table.class_field} ({', '.join(found[:20])}) are "
            f"neither UNOSAT codes nor xBD subtypes; say which are damaged with "
            f"damaged_classes (--damaged-classes)")
    undamaged = tuple(v for v in found if v not in named)
    return _Vocabulary("the file's own", {}, tuple(sorted(named)), undamaged, lambda v: v)


def _canonical(records: pd.DataFrame, vocabulary: _Vocabulary,
               damaged_classes: Sequence[str] | None, path: str,
               field: str) -> tuple[pd.Series, list[str]]:
    """Every class as its vocabulary's code; InputError naming codes neither known nor named."""
    named = {str(v) for v in damaged_classes or ()}
    written = records["label_class"].astype(str)
    distinct = written.unique()
    mapping = {v: vocabulary.canonical(v) or (v if v in named else None) for v in distinct}
    unknown = sorted(v for v, code in mapping.items() if code is None)
    if unknown:
        raise InputError(
            f"{path}: field {field} holds classes that are not {vocabulary.name} classes: "
            f"{', '.join(unknown)} (known: {', '.join(vocabulary.meaning)}); name the damaged "
            f"ones with damaged_classes or fix the file")
    notes = []
    renamed = sorted(f"{v!r} = {c}" for v, c in mapping.items() if c != v)
    numeric_only = all(_is_number(v) for v, c in mapping.items() if c != v)
    if renamed and not numeric_only:
        notes.append(f"classes written as text read as {vocabulary.name} codes "
                     f"({', '.join(renamed)}).")
    return written.map(mapping), notes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _class_sets(vocabulary: _Vocabulary, damaged_classes: Sequence[str] | None,
                codes: pd.Series) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if damaged_classes is None:
        return vocabulary.damaged, vocabulary.undamaged
    damaged = tuple(dict.fromkeys(vocabulary.canonical(str(v)) or str(v)
                                  for v in damaged_classes))
    undamaged = tuple(c for c in vocabulary.undamaged if c not in damaged)
    return damaged, undamaged


def _latest(records: pd.DataFrame, n_sites: int, path: str, date: datetime.date | None,
            post_end: datetime.date | None
            ) -> tuple[pd.DataFrame, datetime.date | None, list[str]]:
    """Each site's latest class at or before the cutoff (a no-coverage record only when the
    site has nothing else), the epoch, and notes on what was chosen and dropped."""
    cutoff = date if date is not None else post_end
    why = "--date" if date is not None else "the end of the post-event imagery"
    notes: list[str] = []
    dated = records["label_date"].notna()
    if not bool(dated.any()):
        if cutoff is not None:
            notes.append(f"the file has no dates, so the cutoff {cutoff} ({why}) was not "
                         f"applied.")
        chosen = records.drop_duplicates("site", keep="last")
        if len(chosen) < n_sites:
            notes.append(f"{n_sites - len(chosen)} of {n_sites} sites have no class and were "
                         f"dropped.")
        return chosen, None, notes
    records = records[dated]
    if cutoff is not None:
        by_cutoff = records["label_date"].dt.normalize() <= pd.Timestamp(cutoff)
        if not bool(by_cutoff.any()):
            earliest = records["label_date"].min().date()
            raise InputError(f"{path}: the cutoff {cutoff} ({why}) is before every "
                             f"assessment date (the earliest is {earliest}); pass "
                             f"--date {earliest} or later")
        records = records[by_cutoff]
    observed = records["label_class"] != NO_COVERAGE
    chosen = (records.assign(_observed=observed)
              .sort_values(["site", "_observed", "label_date"], kind="stable")
              .drop_duplicates("site", keep="last").drop(columns="_observed"))
    epoch = chosen["label_date"].max().date()
    scope = f"at or before {cutoff} ({why})" if cutoff is not None else "(no cutoff given)"
    notes.append(f"epoch {epoch}: each site takes its latest class recorded {scope}.")
    if len(chosen) < n_sites:
        notes.append(f"{n_sites - len(chosen)} of {n_sites} sites have no class recorded "
                     f"{'by ' + str(cutoff) if cutoff is not None else 'at all'} and were "
                     f"dropped.")
    return chosen.sort_values("site"), epoch, notes
