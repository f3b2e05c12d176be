"""The layout of a store an ingest writes, as one typed value: the planned inputs, the chunk,
shard and codec, and the settings that change the pixels. `StoreLayout.attrs` is the store's
`ruinmap` root attribute (provenance and layout); `differences` compares two of them, which
decides whether an existing store is this ingest's (resume, or nothing to do) or another's.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ruinmap import __version__
from ruinmap.cluster.ingest.inplace import InPlaceDates
from ruinmap.cluster.ingest.options import IngestOptions
from ruinmap.cluster.ingest.plan import InputPlan
from ruinmap.cluster.ingest.sources import SourceFile, sha256_of
from ruinmap.cluster.storage.arrays import Compression
from ruinmap.cluster.storage.store import FORMAT_VERSION, SIDES, STORE_FORMAT

__all__ = ["StoreLayout", "Unit", "content_checksums", "differences", "known_checksums",
           "recorded_checksums", "unit_key"]

Unit = tuple[str, int, int, int]  # side, time index, shard row, shard column


def unit_key(side: str, t: int, iy: int, ix: int) -> str:
    """The ledger key of one shard: `pre/<t>/<iy>/<ix>`."""
    return f"{side}/{t}/{iy}/{ix}"


def iso_date(date: np.datetime64 | None) -> str | None:
    return None if date is None else str(np.asarray(date).astype("datetime64[s]"))


@dataclass(frozen=True)
class StoreLayout:
    """What a store is made of and how it is cut (see the module docstring)."""

    inputs: InputPlan
    chunk: int
    shard: int
    compression: Compression
    options: IngestOptions
    # the dates tiles read from their source files (`ingest.inplace`): no shard of theirs
    in_place: InPlaceDates = field(default_factory=InPlaceDates)

    @property
    def shards_per_date(self) -> tuple[int, int]:
        """(rows, columns) of shards covering the grid."""
        grid = self.inputs.grid
        return math.ceil(grid.height / self.shard), math.ceil(grid.width / self.shard)

    def units(self) -> list[Unit]:
        """Every shard of every date of both sides but those read in place: what one task
        writes each."""
        rows, cols = self.shards_per_date
        return [
            (side, t, iy, ix)
            for side in SIDES
            for t in range(len(self.inputs.acquisitions[side]))
            if not self.in_place.is_in_place(side, t)
            for iy in range(rows)
            for ix in range(cols)
        ]

    def template(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The arguments of `storage.arrays.write_template` for this layout."""
        return dict(
            grid=self.inputs.grid,
            times={side: [a.date for a in self.inputs.acquisitions[side]] for side in SIDES},
            bands=self.inputs.bands,
            chunk=self.chunk,
            shard=self.shard,
            compression=self.compression,
            attrs=attrs,
        )

    def attrs(self, checksums: Mapping[str, str | None]) -> dict[str, Any]:
        """The `ruinmap` root attribute of a new store (provenance and layout)."""
        grid, bands = self.inputs.grid, self.inputs.bands
        sources = []
        for side in SIDES:
            for t, acq in enumerate(self.inputs.acquisitions[side]):
                for f, first_band, member in acq.band_parts():
                    source = {
                        "path": f.path,
                        "side": side,
                        "time": iso_date(acq.date),
                        "time_index": t,
                        "bands": list(bands[first_band : first_band + f.count]),
                        "size_bytes": f.size_bytes,
                        "mtime_ns": f.mtime_ns,
                        "sha256": checksums.get(f.path),
                        "date_source": f.date_source,
                        "dtype": f.dtype,
                        "nodata": f.nodata,
                        "crs_wkt": f.grid.crs_wkt if f.grid.crs_wkt != grid.crs_wkt else None,
                        **_product_attrs(f),
                    }
                    if self.in_place.is_in_place(side, t):  # provenance: never copied
                        source["read_in_place"] = True
                    # a mosaic's tiles (`ingest.mosaic`), read first valid pixel in this order
                    if member is not None:
                        source["mosaic_member"] = member
                    if f.item is not None:
                        source["stac_item"] = f.item
                    if f.orbit is not None:
                        source["orbit"] = f.orbit
                    sources.append(source)
                for m, member_ in enumerate(acq.members):
                    if member_.mask is not None:  # a class mask (SCL): nodata, not a band
                        mask = member_.mask
                        entry: dict[str, Any] = {
                            "path": mask.path, "side": side, "time": iso_date(acq.date),
                            "time_index": t, "bands": [], "size_bytes": mask.size_bytes,
                            "mtime_ns": mask.mtime_ns, "sha256": checksums.get(mask.path),
                            "date_source": mask.date_source, "dtype": mask.dtype,
                            "nodata": mask.nodata, "crs_wkt": None, "mosaic_member": m,
                            "stac_item": mask.item, "mask_classes": list(member_.mask_classes),
                        }
                        sources.append(entry)
        attrs = {
            "format": STORE_FORMAT,
            "format_version": FORMAT_VERSION,
            "ruinmap_version": __version__,
            "store_id": uuid.uuid4().hex,
            "grid": grid.to_attrs(),
            "bands": list(bands),
            "sources": sources,
            "compression": self.compression.to_attrs(),
            "chunks": [1, 1, self.chunk, self.chunk],
            "shards": [1, len(bands), self.shard, self.shard],
            "resampling": self.options.resampling,
            "nodata": self.options.nodata,
            "scale": self.options.scale,
            "complete": False,
        }
        if self.in_place:  # absent when every date is copied, as in stores made before it
            attrs["in_place"] = self.in_place.to_attrs()
        return attrs


def _product_attrs(f: SourceFile) -> dict[str, Any]:
    """What the ingest made of a source: the product, its scale decision and evidence, the
    mask layer, orbit, pass, and the nodata / masked shares of a decimated read."""
    product = f.product
    attrs: dict[str, Any] = {
        "product": product.kind,
        "scale": None if f.scale is None else f.scale.to_attrs(),
        "mask": None if product.mask is None else {"path": product.mask.path,
                                                   "kind": product.mask.kind},
        "nodata_fraction": f.nodata_fraction,
        "masked_fraction": f.masked_fraction,
    }
    if product.polarisation is not None:
        attrs["polarisation"] = product.polarisation
    if product.orbit is not None and product.kind == "opera-rtc-s1":
        # the track in an OPERA name; methods.pwtt.date_orbits reads it (others: tags, globs)
        attrs["orbit"] = product.orbit
    if product.pass_direction is not None:
        attrs["pass_direction"] = product.pass_direction
    if product.radiometry is not None:
        attrs["radiometry"] = product.radiometry
    return attrs


_VOLATILE = ("complete", "ruinmap_version", "store_id")
_SOURCE_STAT_KEYS = ("path", "side", "time", "time_index", "bands", "size_bytes", "mtime_ns")
_SOURCE_CONTENT_KEYS = ("path", "side", "time", "time_index", "bands", "size_bytes", "sha256")


def recorded_checksums(attrs: dict[str, Any]) -> dict[tuple[str, int, int | None], str | None]:
    """sha256 (None: not computed yet) of each source a store records, by (path, size, mtime)."""
    return {
        (s["path"], s["size_bytes"], s.get("mtime_ns")): s.get("sha256")
        for s in attrs.get("sources", [])
    }


def known_checksums(attrs: dict[str, Any]) -> dict[tuple[str, int, int | None], str]:
    """sha256 of each source a store records, by (path, size, mtime): reused while unchanged."""
    return {
        (s["path"], s["size_bytes"], s.get("mtime_ns")): s["sha256"]
        for s in attrs.get("sources", [])
        if s.get("sha256")
    }


def content_checksums(attrs: dict[str, Any], files: Sequence[SourceFile]
                      ) -> dict[str, str | None]:
    """The sha256 of each of `files` to compare a store's sources by content: the one the
    store (`attrs`) records while the file is unchanged, else hashed now; None for a STAC
    asset, whose item and href are its provenance (hashing it would download it)."""
    stored = known_checksums(attrs)
    return {f.path: None if f.item is not None else
            stored.get((f.path, f.size_bytes, f.mtime_ns)) or sha256_of(f.path)
            for f in files}


def _signature(attrs: dict[str, Any], by_content: bool) -> dict[str, Any]:
    keys = _SOURCE_CONTENT_KEYS if by_content else _SOURCE_STAT_KEYS
    sig = {k: v for k, v in attrs.items() if k not in (*_VOLATILE, "sources")}
    sig["sources"] = [{k: s.get(k) for k in keys} for s in attrs.get("sources", [])]
    if "in_place" in sig:
        # a touched file is compared by the sources' rule, not its mtime; as JSON text, so
        # a NaN nodata read back equals the planned one and tuples equal lists
        sig["in_place"] = json.dumps(_without_mtimes(sig["in_place"]), sort_keys=True)
    return sig


def _without_mtimes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_mtimes(v) for k, v in value.items() if k != "mtime_ns"}
    if isinstance(value, list):
        return [_without_mtimes(v) for v in value]
    return value


def differences(old: dict[str, Any], new: dict[str, Any], by_content: bool) -> list[str]:
    """The keys in which two stores' `ruinmap` attributes differ (sources compared by stat,
    or with `by_content` by checksum), leaving out what differs between any two runs."""
    a, b = _signature(old, by_content), _signature(new, by_content)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
